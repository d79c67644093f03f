-- One ledger writer at a time (released at commit): keeps the event chain gapless and ordered.
SELECT pg_advisory_xact_lock(hashtext('kbi_event'))
