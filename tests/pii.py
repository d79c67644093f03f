"""Searching outputs for the synthetic people: none may appear outside KBI, the encrypted files
and the quarantine (P12). Findings are reported as counts and places, never as the values."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from kbi import reference


@dataclass(frozen=True)
class People:
    numbers: frozenset[str]
    names: frozenset[str]

    @classmethod
    def of(cls, rows: Iterable[Mapping[str, object]]) -> People:
        numbers: set[str] = set()
        names: set[str] = set()
        # Words of municipality names (Sint-Lambrechts-Woluwe) are in logs by right.
        towns = {
            w.casefold() for m in reference.municipalities().values() for w in re.split(r"[\s\-']+", m.name)
        }
        for r in rows:
            insz = r.get("insz")
            if isinstance(insz, str) and re.fullmatch(r"[0-9]{11}", insz):
                numbers.add(insz)
            for key in ("familienaam", "voornamen"):
                value = r.get(key)
                if not isinstance(value, str):
                    continue
                for part in re.split(r"[\s\-']+", value):
                    # Short or town-like words would match innocent text; long ones identify.
                    if len(part) >= 6 and part.isalpha() and part.casefold() not in towns:
                        names.add(part)
        return cls(frozenset(numbers), frozenset(names))

    def find(self, text: str) -> dict[str, int]:
        """How many distinct numbers and names occur in ``text`` (0 and 0 is the only good answer)."""
        digits = set(re.findall(r"(?<![0-9])[0-9]{11}(?![0-9])", text))
        words = set(re.findall(r"[^\W\d_]{6,}", text))
        return {"national_numbers": len(digits & self.numbers), "names": len(words & self.names)}


def sqlite_text(path: Path) -> str:
    """Every value of every table of a SQLite database, as text."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        out = []
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                out.append(
                    " ".join(
                        ""
                        if v is None
                        else (v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v))
                        for v in row
                    )
                )
        return "\n".join(out)
    finally:
        conn.close()


def files_text(paths: Iterable[Path]) -> str:
    return "\n".join(p.read_bytes().decode("utf-8", "replace") for p in paths if p.is_file())


def leaks(people: People, **texts: str) -> dict[str, dict[str, int]]:
    """The places where personal data was found, with counts; empty when there is none."""
    found = {}
    for place, text in texts.items():
        hits = people.find(text)
        if any(hits.values()):
            found[place] = hits
    return found
