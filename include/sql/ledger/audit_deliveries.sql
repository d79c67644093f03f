SELECT delivery_id, run_id, nis_code, kind, correction_ref, period, reference_date, state, mode,
       key_fingerprint, inbox, file_name, row_count, size_bytes, sha256, planned_at, encrypted_at,
       uploaded_at, passphrase_sent_at, published_at, sms_sent_at, mail_sent_at, announced_at,
       withdrawn_at, picked_up_at, reminded_at, purged_at, delete_by, last_error
FROM kbi_delivery
WHERE planned_at >= :since AND planned_at < :until
  AND (CAST(:nis_code AS TEXT) IS NULL OR nis_code = CAST(:nis_code AS TEXT))
ORDER BY nis_code, planned_at
