"""The quarantine store (P11): failing rows, with the run, the check and the date.

It is personal data, so it has its own connection (``kbi_quarantine``) and never shares a table
with the ledger. Writing a run's rows replaces whatever that run wrote before (a retried quality
step does not double them).
"""

from __future__ import annotations

from datetime import date

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from kbi import migrations, sqlfiles

COMPONENT = "quarantine"


class Quarantine:
    def __init__(self, engine: Engine):
        self.engine = engine
        self.dialect = engine.dialect.name

    def _sql(self, name: str) -> sa.TextClause:
        return sa.text(sqlfiles.load(f"quarantine/{name}", self.dialect))

    def migrate(self) -> list[int]:
        return migrations.apply(self.engine, COMPONENT)

    def store(self, run_id: str, failed: pa.Table, detected_on: date) -> int:
        def iso(value: object) -> str | None:
            return value.isoformat() if value is not None else None  # type: ignore[attr-defined]

        rows = [
            {
                "run_id": run_id,
                "check_name": r["failed_check"],
                "detected_on": detected_on.isoformat(),
                "nis_code": r["nis_code"],
                "insz": r["insz"],
                "familienaam": r["familienaam"],
                "voornamen": r["voornamen"],
                "ingeschreven": None if r["ingeschreven"] is None else int(r["ingeschreven"]),
                "contract_op": iso(r["contract_op"]),
                "attest_op": iso(r["attest_op"]),
                "overleden_op": iso(r["overleden_op"]),
            }
            for r in failed.to_pylist()
        ]
        with self.engine.begin() as conn:
            conn.execute(self._sql("delete_run"), {"run_id": run_id})
            if rows:
                conn.execute(self._sql("insert_row"), rows)
        return len(rows)

    def purge(self, older_than_days: int, today: date) -> int:
        """Delete rows detected more than ``older_than_days`` ago; returns how many."""
        cutoff = date.fromordinal(today.toordinal() - older_than_days).isoformat()
        with self.engine.begin() as conn:
            return conn.execute(self._sql("purge"), {"cutoff": cutoff}).rowcount

    def rows(
        self,
        run_id: str | None = None,
        nis_code: str | None = None,
        check_name: str | None = None,
        include_resolved: bool = False,
    ) -> list[dict]:
        """The quarantined rows, personal data included: for the quality officer's eyes only."""
        params = {
            "run_id": run_id,
            "nis_code": nis_code,
            "check_name": check_name,
            "include_resolved": int(include_resolved),
        }
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(self._sql("list"), params).mappings()]

    def resolve(self, row_id: int, resolution: str, today: date) -> bool:
        """Mark a row handled (e.g. 'corrected in KBI'); False when unknown or already resolved."""
        with self.engine.begin() as conn:
            params = {"id": row_id, "resolution": resolution, "resolved_on": today.isoformat()}
            return conn.execute(self._sql("resolve"), params).rowcount == 1

    def counts(self, run_id: str) -> dict[str, int]:
        with self.engine.connect() as conn:
            return {r.check_name: r.n for r in conn.execute(self._sql("count_by_check"), {"run_id": run_id})}
