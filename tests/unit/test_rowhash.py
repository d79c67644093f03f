"""kbi.rowhash: keyed row hashes stay the same across versions (P10, P13).

A correction compares a new list with the hashes an earlier run stored, maybe years before: a
change of how they are computed would count every row as changed. The vector below was computed
by the first version of the module (a dict per row, ``hmac.new``).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from kbi import rowhash, selection
from tests.helpers import partition_table

KNOWN_SECRET = b"known-secret"
KNOWN_ROW = {
    "insz": ["85071400133"],
    "familienaam": ["Peeters"],
    "voornamen": ["Anna"],
    "contract_ja": [True],
    "attest_ja": pa.array([None], pa.bool_()),
}
KNOWN_HASHES = [
    (
        "c913330bb256a9ebd20231c4e5096397b99c2a10718e060497819e5749cd6627",
        "5b90e5736beb80989680ea6ee87220ae12d62004867c66099cb6d5f18e4f5d2d",
    )
]


def test_known_vector() -> None:
    assert rowhash.hashes(pa.table(KNOWN_ROW), rowhash.derive(KNOWN_SECRET)) == KNOWN_HASHES


def test_one_pair_per_row_and_content_follows_every_delivered_cell() -> None:
    table = selection.minimise(partition_table(50, seed=4), ["rijksregisternummer", "naam", "voornaam"])
    key = rowhash.derive(b"s")
    pairs = rowhash.hashes(table, key)
    assert len(pairs) == table.num_rows
    assert len({p for p, _ in pairs}) == table.num_rows  # one person hash per number
    flipped = table.set_column(
        table.column_names.index("attest_ja"), "attest_ja", pc.invert(table["attest_ja"])
    )
    again = rowhash.hashes(flipped, key)
    assert [p for p, _ in again] == [p for p, _ in pairs]  # the same people
    assert all(c1 != c2 for (_, c1), (_, c2) in zip(pairs, again, strict=True))  # every row changed
    assert rowhash.hashes(table, rowhash.derive(b"other")) != pairs  # keyed
