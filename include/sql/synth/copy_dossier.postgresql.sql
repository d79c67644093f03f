-- Bulk load of the synthetic KBI base table (kbi.synth.write_postgres, psycopg2 copy_expert).
-- CSV as pyarrow writes it, no header, columns in this order: strings always quoted (so an empty
-- string stays empty), NULL as an unquoted empty field, booleans true/false, dates and timestamps ISO.
COPY kbi_dossier (
    dossier_id, insz, doelgroep, familienaam, voornamen, geboortedatum, nationaliteit, adres,
    nis_code_hoofdverblijf, ingeschreven_rijksregister, contract_ondertekend_op, attest_behaald_op,
    overleden_op, gewijzigd_op
) FROM STDIN WITH (FORMAT csv, HEADER false);
