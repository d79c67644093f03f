-- The whole mutable row is written back at once; the caller changed it and records why as an event.
UPDATE kbi_delivery
SET state = :state, mode = :mode, key_fingerprint = :key_fingerprint, file_name = :file_name,
    inbox = :inbox, row_count = :row_count, size_bytes = :size_bytes, sha256 = :sha256,
    attempt = :attempt, encrypted_at = :encrypted_at, uploaded_at = :uploaded_at,
    passphrase_sent_at = :passphrase_sent_at, published_at = :published_at,
    sms_sent_at = :sms_sent_at, mail_sent_at = :mail_sent_at, announced_at = :announced_at,
    withdrawn_at = :withdrawn_at, picked_up_at = :picked_up_at, reminded_at = :reminded_at,
    purged_at = :purged_at, delete_by = :delete_by, last_error = :last_error
WHERE delivery_id = :delivery_id
