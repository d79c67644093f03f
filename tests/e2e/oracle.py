"""An independent statement of what each municipality's file must hold, for the end-to-end tests.

Written per row in plain Python with python-stdnum, deliberately unlike the pipeline's vectorised
code, straight from interfaces.md §1 and §3 and the blocking checks of P11: if both agree, the
files are right for the right reasons.
"""

from __future__ import annotations

import calendar
import csv
import io
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import date

from stdnum.be import bis, nn

from kbi import reference

FIELDS = (
    "rijksregisternummer",
    "naam",
    "voornaam",
    "inburgeringscontract_ondertekend",
    "attest_inburgering_behaald",
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _d(value: object) -> date | None:
    if value in (None, ""):
        return None
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def _checksum_century(insz: str, today: date) -> int | None:
    first9 = int(insz[:9])
    check = int(insz[9:])
    if 97 - first9 % 97 == check:
        return 1900
    if int(insz[:2]) + 2000 <= today.year and 97 - (2_000_000_000 + first9) % 97 == check:
        return 2000
    return None


def _real_birth_date(insz: str, today: date) -> bool:
    century = _checksum_century(insz, today)
    assert century is not None
    if insz[:6] in ("000001", "002001", "004001"):
        return True
    year, month, day = century + int(insz[:2]), int(insz[2:4]) % 20, int(insz[4:6])
    if int(insz[2:4]) > 52 or month > 12:
        return False
    if month == 0:
        return True
    if day > calendar.monthrange(year, month)[1]:
        return False
    return date(year, month, max(day, 1)) <= today


def blocking_failure(row: Mapping[str, object], counts: Counter, today: date) -> str | None:
    insz = row["insz"]
    if not isinstance(insz, str) or not re.fullmatch(r"[0-9]{11}", insz):
        return "insz_format"
    if not (nn.is_valid(insz) or bis.is_valid(insz)) or _checksum_century(insz, today) is None:
        return "insz_checksum"
    if not _real_birth_date(insz, today):
        return "insz_birth_date"
    if counts[insz] > 1:
        return "insz_duplicate"
    registered = row["ingeschreven_rijksregister"] in (1, True, "1", "t", "true")
    if int(insz[2:4]) >= 20 and registered:
        return "bis_registered"
    for name in ("familienaam", "voornamen"):
        value = row[name]
        if value is None or not str(value).strip():
            return "name_missing"
    for name in ("familienaam", "voornamen"):
        value = str(row[name])
        if _CONTROL.search(value) or len(value) > 100:
            return "name_invalid"
    nis = row["nis_code_hoofdverblijf"]
    if nis is not None and nis not in reference.municipalities() and nis not in reference.crosswalk():
        return "nis_unknown"
    for col in ("contract_ondertekend_op", "attest_behaald_op", "overleden_op"):
        value = _d(row[col])
        if value is not None and value > today:
            return "date_in_future"
    return None


def _cell(value: str) -> str:
    return "'" + value if value.startswith(("=", "+", "-", "@", "\t", "\r")) else value


def expected_files(
    rows: Iterable[Mapping[str, object]],
    reference_date: date,
    today: date,
    fields_by_nis: Mapping[str, tuple[str, ...]],
) -> tuple[dict[str, list[tuple[str, ...]]], Counter]:
    """Rows (as CSV cell tuples, unordered) per receiving municipality, and the failure counts."""
    inburgeraars = [r for r in rows if r["doelgroep"] == "inburgeraar"]
    counts = Counter(r["insz"] for r in inburgeraars)
    failures: Counter = Counter()
    files: dict[str, list[tuple[str, ...]]] = {nis: [] for nis in fields_by_nis}
    for r in inburgeraars:
        failure = blocking_failure(r, counts, today)
        if failure:
            failures[failure] += 1
            continue
        insz = str(r["insz"])
        nis = r["nis_code_hoofdverblijf"]
        nis = reference.crosswalk().get(nis, nis) if nis else None
        registered = r["ingeschreven_rijksregister"] in (1, True, "1", "t", "true")
        died = _d(r["overleden_op"])
        if not registered or bis.is_valid(insz) or (died is not None and died <= reference_date):
            continue
        if nis not in files:
            continue
        contract, attest = _d(r["contract_ondertekend_op"]), _d(r["attest_behaald_op"])
        values = {
            "rijksregisternummer": insz,
            "naam": _cell(str(r["familienaam"])),
            "voornaam": _cell(str(r["voornamen"])),
            "inburgeringscontract_ondertekend": "ja" if contract and contract <= reference_date else "nee",
            "attest_inburgering_behaald": "ja" if attest and attest <= reference_date else "nee",
        }
        files[nis].append(tuple(values[f] for f in fields_by_nis[nis]))
    return files, failures


def parse_csv(data: bytes) -> tuple[list[str], list[tuple[str, ...]]]:
    """Parse a delivered file strictly as interfaces.md §3 describes it."""
    assert data.startswith(b"\xef\xbb\xbf"), "no UTF-8 BOM"
    text = data[3:].decode("utf-8")
    assert text.endswith("\r\n"), "last line does not end in CRLF"
    unquoted = re.sub(r'"(?:[^"]|"")*"', "", text)
    assert "\n" not in unquoted.replace("\r\n", ""), "a bare LF outside a quoted cell"
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=";", quotechar='"')
    header, *body = list(reader)
    return header, [tuple(row) for row in body]


def collation(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
