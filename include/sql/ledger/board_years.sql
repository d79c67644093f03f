-- Status board (read-only): the years the ledger has deliveries or decisions for (year picker).
SELECT substr(period, 1, 4) AS year FROM kbi_delivery
UNION
SELECT substr(decided_at, 1, 4) AS year FROM kbi_decision
ORDER BY year
