"""Keyed hashes of a delivered list's rows: traceable later, readable never (P10, P13).

For each row, HMAC-SHA256 of the national number (who) and of the delivered cells (what), with a
secret that never enters the ledger. A correction compares two lists by them: rows added,
removed and changed, as counts, without the ledger holding a national number or a name.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import pyarrow as pa

_SEPARATOR = "\x1f"  # the ASCII unit separator: cannot occur in a checked name


def derive(secret: bytes) -> bytes:
    """The row key, derived from the ledger's chain secret when no separate one is configured."""
    return hmac.digest(secret, b"kbi row hashes v1", "sha256")


def hashes(table: pa.Table, key: bytes) -> list[tuple[str, str]]:
    """(person, content) per row of a list as delivered (its minimised columns)."""
    # Column by column into Python lists (no dict per row); the one-shot C HMAC per value.
    values = {c: table[c].to_pylist() for c in table.column_names}
    columns = [["" if v is None else str(v) for v in column] for column in values.values()]
    numbers = [str(v) for v in values["insz"]]
    return [
        (
            hmac.digest(key, b"person\n" + number.encode(), "sha256").hex(),
            hmac.digest(key, b"row\n" + _SEPARATOR.join(cells).encode(), "sha256").hex(),
        )
        for number, cells in zip(numbers, zip(*columns, strict=True), strict=True)
    ]


@dataclass(frozen=True)
class Difference:
    added: int
    removed: int
    changed: int
    unchanged: int

    def as_dict(self) -> dict[str, int]:
        return {
            "added": self.added,
            "removed": self.removed,
            "changed": self.changed,
            "unchanged": self.unchanged,
        }


def compare(before: Mapping[str, str], after: Iterable[tuple[str, str]]) -> Difference:
    after_map = dict(after)
    common = before.keys() & after_map.keys()
    changed = sum(1 for p in common if before[p] != after_map[p])
    return Difference(
        added=len(after_map.keys() - before.keys()),
        removed=len(before.keys() - after_map.keys()),
        changed=changed,
        unchanged=len(common) - changed,
    )
