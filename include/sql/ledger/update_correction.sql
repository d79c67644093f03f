-- The whole mutable row written back at once; the caller records why as an event.
UPDATE kbi_correction
SET run_id = :run_id, round = :round, state = :state, extended_to = :extended_to, decision = :decision,
    decision_reason = :decision_reason, decided_by = :decided_by, handled_on = :handled_on,
    delivery_id = :delivery_id, rows_added = :rows_added, rows_removed = :rows_removed,
    rows_changed = :rows_changed, reminded_on = :reminded_on, escalated_on = :escalated_on,
    acknowledged_at = :acknowledged_at,
    reported_on = :reported_on, due_on = :due_on, reporter = :reporter,
    description_sha256 = :description_sha256, description_length = :description_length
WHERE reference = :reference
