"""Data quality before anything leaves the agency (P11): blocking checks, quarantine, reports."""
