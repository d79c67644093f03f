-- The longest each statement of this transaction may run (milliseconds, as text): a hung read fails.
SELECT set_config('statement_timeout', :timeout_ms, true)
