-- Quarantined rows older than the retention period leave the agency's hands (P10, P11).
DELETE FROM kbi_quarantine WHERE detected_on < :cutoff
