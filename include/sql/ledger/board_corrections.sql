-- Status board (read-only): correction requests (P9) reported in the asked year, and those of earlier years
-- still open. Neither the reporter nor who decided: the board needs the clock, not the people.
SELECT c.reference, c.nis_code, c.reported_on, c.due_on, c.extended_to, c.round, c.state,
       c.decision, c.handled_on, c.delivery_id, c.run_id, r.dag_id
FROM kbi_correction c
LEFT JOIN kbi_run r ON r.run_id = c.run_id
WHERE substr(c.reported_on, 1, 4) = :year
   OR (c.state IN ('open', 'extended', 'reopened') AND substr(c.reported_on, 1, 4) < :year)
ORDER BY c.nis_code, c.reported_on, c.reference
