-- One row of the synthetic KBI base table (kbi.synth.write_sqlite, executemany over tuples).
-- Parameters: sqlite3 qmark style (?), in this column order, because the bulk load binds plain
-- tuples through the sqlite3 stdlib module (faster than named binds). Values as SQLite stores
-- them: booleans 0/1, dates 'YYYY-MM-DD', timestamps 'YYYY-MM-DD HH:MM:SS'.
INSERT INTO kbi_dossier (
    dossier_id, insz, doelgroep, familienaam, voornamen, geboortedatum, nationaliteit, adres,
    nis_code_hoofdverblijf, ingeschreven_rijksregister, contract_ondertekend_op, attest_behaald_op,
    overleden_op, gewijzigd_op
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?);
