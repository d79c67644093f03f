"""Versioned schema migrations kept as plain SQL files, applied in order, recorded in a table.

``include/sql/<component>/migrations/NNN_name.sql`` (or ``NNN_name.<dialect>.sql`` where a dialect
needs its own text). Each migration runs in one transaction with its version row, so a crash leaves
it either applied and recorded or neither; applying twice is a no-op. An applied file whose text
changed afterwards is an error: history is not rewritten.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from kbi import settings, sqlfiles

_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def available(component: str, dialect: str, sql_dir: Path | None = None) -> list[Migration]:
    base = (sql_dir or settings.load().sql_dir) / component / "migrations"
    found: dict[int, Migration] = {}
    for path in sorted(base.glob("*.sql")):
        stem_parts = path.name.split(".")
        # NNN_name.sql, or NNN_name.<dialect>.sql overriding it for that dialect
        if len(stem_parts) == 3 and stem_parts[1] != dialect:
            continue
        generic = path.with_name(f"{stem_parts[0]}.sql")
        match = _NAME.match(generic.name)
        if not match:
            raise MigrationError(f"{path}: migration files are named NNN_name.sql")
        version = int(match.group(1))
        if len(stem_parts) == 2 and version in found:
            continue  # the dialect-specific file already won
        found[version] = Migration(version, match.group(2), path)
    return [found[v] for v in sorted(found)]


def apply(engine: Engine, component: str, sql_dir: Path | None = None) -> list[int]:
    """Bring ``component``'s schema up to date; returns the versions applied now."""
    dialect = engine.dialect.name
    applied_now: list[int] = []
    for migration in available(component, dialect, sql_dir):
        with engine.begin() as conn:
            if dialect == "postgresql":
                conn.execute(sa.text(sqlfiles.load("migrations/lock", dialect, sql_dir)))
            conn.execute(sa.text(sqlfiles.load("migrations/create_version_table", dialect, sql_dir)))
            done = {
                row.version: row
                for row in conn.execute(
                    sa.text(sqlfiles.load("migrations/applied", dialect, sql_dir)), {"component": component}
                )
            }
            if migration.version in done:
                if done[migration.version].checksum != migration.checksum:
                    raise MigrationError(
                        f"{component} migration {migration.version:03d}_{migration.name} was changed "
                        "after it was applied; add a new migration instead"
                    )
                continue
            for stmt in sqlfiles.split(migration.path.read_text(encoding="utf-8")):
                conn.execute(sa.text(stmt))
            conn.execute(
                sa.text(sqlfiles.load("migrations/record", dialect, sql_dir)),
                {
                    "component": component,
                    "version": migration.version,
                    "name": migration.name,
                    "checksum": migration.checksum,
                    "applied_at": datetime.now(UTC).isoformat(timespec="seconds"),
                },
            )
            applied_now.append(migration.version)
    return applied_now
