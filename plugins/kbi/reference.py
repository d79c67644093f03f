"""The municipality reference list (NIS codes as of 1 January 2025) and the 2024→2025 crosswalk.

P1: only municipalities of the Flemish Region can receive; the 19 Brussels municipalities are in
the list so that their residents are recognised (and delivered to nobody), not to receive.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from kbi import settings

FLEMISH = "VLG"
BRUSSELS = "BRU"


@dataclass(frozen=True)
class Municipality:
    nis_code: str
    name: str
    region: str
    province: str

    @property
    def is_flemish(self) -> bool:
        return self.region == FLEMISH


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


@cache
def municipalities(reference_dir: Path | None = None) -> dict[str, Municipality]:
    """All 304 municipalities by NIS code (285 Flemish, 19 Brussels)."""
    base = reference_dir or settings.load().reference_dir
    return {
        row["nis_code"]: Municipality(row["nis_code"], row["name_nl"], row["region"], row["province"])
        for row in _read(base / "municipalities.csv")
    }


@cache
def crosswalk(reference_dir: Path | None = None) -> dict[str, str]:
    """Pre-2025 NIS codes of merged municipalities → their 2025 code (identity rows omitted)."""
    base = reference_dir or settings.load().reference_dir
    return {
        row["old_nis_code"]: row["new_nis_code"]
        for row in _read(base / "nis_crosswalk_2024_2025.csv")
        if row["old_nis_code"] != row["new_nis_code"]
    }


@cache
def volume_weights(reference_dir: Path | None = None) -> dict[str, float]:
    """Estimated share of the yearly KBI volume per municipality (synthetic data only)."""
    base = reference_dir or settings.load().reference_dir
    return {
        row["nis_code"]: float(row["est_share_of_yearly_kbi_contracts"])
        for row in _read(base / "municipality_weights_ESTIMATE.csv")
    }
