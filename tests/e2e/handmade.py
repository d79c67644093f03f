"""A hand-made KBI source: each row written exactly as given (raw text where a test needs a value
no real type could hold), through the project's own DDL and insert statement."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from pathlib import Path

from kbi import sqlfiles

COLUMNS = (
    "dossier_id", "insz", "doelgroep", "familienaam", "voornamen", "geboortedatum", "nationaliteit", "adres",
    "nis_code_hoofdverblijf", "ingeschreven_rijksregister", "contract_ondertekend_op", "attest_behaald_op",
    "overleden_op", "gewijzigd_op",
)  # fmt: skip

DEFAULTS = {
    "doelgroep": "inburgeraar",
    "geboortedatum": None,
    "nationaliteit": "Marokko",
    "adres": "Kerkstraat 1",
    "ingeschreven_rijksregister": 1,
    "contract_ondertekend_op": "2024-05-01",
    "attest_behaald_op": None,
    "overleden_op": None,
    "gewijzigd_op": "2025-01-01 00:00:00",
}


def write(path: Path, rows: Iterable[Mapping[str, object]]) -> list[dict[str, object]]:
    full = [{**DEFAULTS, "dossier_id": i + 1, **row} for i, row in enumerate(rows)]
    path.unlink(missing_ok=True)
    con = sqlite3.connect(path)
    try:
        with con:
            for stmt in sqlfiles.statements("synth/create_source", "sqlite"):
                con.execute(stmt)
            con.executemany(
                sqlfiles.load("synth/insert_dossier", "sqlite"), [tuple(r[c] for c in COLUMNS) for r in full]
            )
    finally:
        con.close()
    return full
