SELECT seq, hash FROM kbi_event ORDER BY seq DESC LIMIT 1
