-- When an event of this type was last recorded for a municipality (e.g. a key-expiry warning,
-- sent at most once a week).
SELECT MAX(recorded_at) FROM kbi_event WHERE event_type = :event_type AND nis_code = :nis_code
