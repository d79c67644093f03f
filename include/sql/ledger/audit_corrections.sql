SELECT reference, nis_code, reported_on, due_on, round, state, extended_to, decision, decided_by,
       handled_on, delivery_id, rows_added, rows_removed, rows_changed, reminded_on, escalated_on
FROM kbi_correction
WHERE reported_on >= :since AND reported_on < :until
  AND (CAST(:nis_code AS TEXT) IS NULL OR nis_code = CAST(:nis_code AS TEXT))
ORDER BY reported_on, reference
