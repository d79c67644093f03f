"""kbi.quality.national_number: the vectorised check must agree with python-stdnum (P11).

stdnum.be.nn / stdnum.be.bis are the reference for format and checksum. Where stdnum is lenient
on purpose (31 February reads as "day unknown") the vectorised check is stricter: an impossible
or future birth date cannot be a real number. Assertions compare counts and booleans only.

PYTEST_DONT_REWRITE: this module handles synthetic national numbers and names, so pytest's
assertion rewriting is off here: a failure shows the assert's own message only, never the
values compared (P12).
"""

from __future__ import annotations

import random
from datetime import date

import numpy as np
import pyarrow as pa
import pytest
from stdnum.be import bis, nn
from stdnum.exceptions import InvalidChecksum, ValidationError

from kbi.quality import national_number
from tests.helpers import FICTITIOUS_PREFIXES, check_digits, make_nn

TODAY = date.today()  # stdnum's century rule reads the real date: use the same one


def _verdict(value: str | None, today: date = TODAY) -> str | None:
    """One number through the vectorised check: the problem found, or None when valid."""
    v = national_number.check(pa.array([value], pa.string()), today)
    for name in ("bad_format", "bad_checksum", "bad_birth_date"):
        if bool(getattr(v, name)[0]):
            return name
    return None


def _stdnum_reference(value: str) -> str | None:
    """The verdict python-stdnum gives, plus the stricter birth-date rule spelled out by hand."""
    if len(value) != 11 or not value.isascii() or not value.isdigit():
        return "bad_format"
    errors = []
    for module in (nn, bis):
        try:
            module.validate(value)
            break
        except ValidationError as exc:
            errors.append(exc)
    else:
        if any(isinstance(e, InvalidChecksum) for e in errors):
            return "bad_checksum"
        return "bad_birth_date"  # checksum fine, month outside every range stdnum allows
    if value[:6] in FICTITIOUS_PREFIXES:
        return None
    year = nn.get_birth_year(value)
    month = int(value[2:4]) % 20
    day = int(value[4:6])
    if month == 0:
        return "bad_birth_date" if date(year, 1, 1) > TODAY else None
    try:
        born = date(year, month, day or 1)
    except ValueError:
        return "bad_birth_date"  # stdnum reads 31 February as "day unknown"; it cannot exist
    return "bad_birth_date" if born > TODAY else None


def _random_numbers(count: int, seed: int) -> list[str]:
    """Numbers around every edge: months 0-99 (BIS +20/+40), days 0-35, both check-digit rules."""
    rng = random.Random(seed)
    months = [*range(0, 16), *range(19, 34), *range(39, 54), 60, 80, 99]
    out = []
    for _ in range(count):
        yy, mm, dd, serial = rng.randint(0, 99), rng.choice(months), rng.randint(0, 35), rng.randint(0, 999)
        first9 = f"{yy:02d}{mm:02d}{dd:02d}{serial:03d}"
        kind = rng.random()
        if kind < 0.4:
            out.append(first9 + check_digits(first9, born_2000=False))
        elif kind < 0.8:
            out.append(first9 + check_digits(first9, born_2000=True))
        else:
            out.append(first9 + f"{rng.randint(0, 99):02d}")
    return out


def test_checksum_agrees_with_stdnum_on_many_numbers() -> None:
    """P11: same accept/reject on the mod-97 check (both centuries) as stdnum, for 20,000 numbers."""
    values = _random_numbers(20_000, seed=2026)
    verdicts = national_number.check(pa.array(values), TODAY)

    def stdnum_checksum_ok(value: str) -> bool:
        try:
            nn.validate(value)
        except InvalidChecksum:
            return False
        except ValidationError:
            return True  # failed later than the checksum
        return True

    expected = np.array([stdnum_checksum_ok(v) for v in values])
    got = ~verdicts.bad_checksum & ~verdicts.bad_format
    assert int(np.count_nonzero(expected != got)) == 0, "checksum verdicts differ from stdnum"
    # Both outcomes occur plenty: the comparison is not vacuous.
    assert 1000 < int(expected.sum()) < 19_000


def test_full_verdict_agrees_with_stdnum_plus_the_date_rule() -> None:
    """Valid here exactly when stdnum (nn or bis) accepts it and the birth date can exist."""
    values = _random_numbers(20_000, seed=97)
    verdicts = national_number.check(pa.array(values), TODAY)
    got = np.where(
        verdicts.bad_format,
        "bad_format",
        np.where(
            verdicts.bad_checksum, "bad_checksum", np.where(verdicts.bad_birth_date, "bad_birth_date", "")
        ),
    )
    expected = np.array([_stdnum_reference(v) or "" for v in values])
    # The one known difference (unknown day in a future month of this year) is pinned in its
    # own test below; the random sample must not depend on today's date for it.
    edge = np.array([v[4:6] == "00" and int(v[:2]) == TODAY.year % 100 for v in values])
    assert int(np.count_nonzero((expected != got) & ~edge)) == 0, "verdicts differ from the reference"
    assert set(expected) == {"", "bad_checksum", "bad_birth_date"}


def test_never_more_lenient_than_stdnum() -> None:
    """Whatever passes here passes stdnum.be.nn or stdnum.be.bis too."""
    values = _random_numbers(5_000, seed=5)
    v = national_number.check(pa.array(values), TODAY)
    ok = ~(v.bad_format | v.bad_checksum | v.bad_birth_date)
    passed = [val for val, good in zip(values, ok, strict=True) if good]
    assert passed, "no number passed: the sample is useless"
    assert all(nn.is_valid(x) or bis.is_valid(x) for x in passed)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "1234567890",
        "123456789012",
        "8507300332A",
        "85.07.30-033.28",
        " 85073003328",
        "８５０７３００３３２８",
    ],
    ids=["empty", "10-digits", "12-digits", "letter", "formatted", "leading-space", "fullwidth-digits"],
)
def test_format_errors_are_caught_not_crashing(value: str) -> None:
    """Catalogue #6: wrong length, letters, separators: InvalidFormat, never a crash (P11)."""
    assert _verdict(value) == "bad_format"


def test_null_is_a_format_error() -> None:
    v = national_number.check(pa.array([None, make_nn(85, 7, 30, 33)], pa.string()), TODAY)
    assert v.bad_format.tolist() == [True, False]


def test_all_zeros_is_rejected() -> None:
    """Catalogue #6: 00000000000 is never accepted (stdnum: InvalidFormat; here the checksum)."""
    assert _verdict("00000000000") in ("bad_format", "bad_checksum")
    assert not nn.is_valid("00000000000")


def test_wrong_checksum_is_caught() -> None:
    """Catalogue #1: one changed check digit."""
    good = make_nn(85, 7, 30, 33)
    bad = good[:-1] + str((int(good[-1]) + 1) % 10)
    assert _verdict(good) is None
    assert _verdict(bad) == "bad_checksum"


def test_born_2000_or_later_uses_the_2_prefix_rule() -> None:
    new = make_nn(5, 3, 14, 120, born_2000=True)
    assert _verdict(new) is None
    assert nn.is_valid(new)
    # The same digits under the 1900 rule would be a different number; the 2000 rule must apply.
    old = make_nn(5, 3, 14, 120, born_2000=False)
    assert _verdict(old) is None and old != new


def test_2000_rule_not_possible_for_a_year_that_has_not_started() -> None:
    """A check digit valid only under the 2000+ rule for a year after today is a checksum error."""
    future_yy = (TODAY.year + 1) % 100
    # Digits that satisfy the 2000+ rule only (some serials satisfy the 1900 rule as well).
    candidates = (make_nn(future_yy, 1, 1, serial, born_2000=True) for serial in range(1, 998))
    value = next(v for v in candidates if not nn.is_valid(v))
    assert _verdict(value) == "bad_checksum"


@pytest.mark.parametrize(
    ("yy", "mm", "dd", "born_2000"),
    [(85, 2, 30, False), (85, 2, 31, False), (85, 4, 31, False), (85, 6, 31, False), (85, 13, 12, False)],
    ids=["30-feb", "31-feb", "31-apr", "31-jun", "month-13"],
)
def test_impossible_birth_dates_are_caught(yy: int, mm: int, dd: int, born_2000: bool) -> None:
    """stdnum lets 31 February pass as 'day unknown'; here it is an impossible birth date (P11)."""
    value = make_nn(yy, mm, dd, 101, born_2000)
    assert _verdict(value) == "bad_birth_date"


def test_leap_days() -> None:
    assert _verdict(make_nn(84, 2, 29, 5)) is None  # 1984 is a leap year
    assert _verdict(make_nn(85, 2, 29, 5)) == "bad_birth_date"
    assert _verdict(make_nn(0, 2, 29, 5, born_2000=True)) is None  # 2000 is a leap year
    assert _verdict(make_nn(0, 2, 29, 5, born_2000=False)) == "bad_birth_date"  # 1900 is not


def test_future_birth_date_is_caught() -> None:
    today = date(2026, 3, 10)
    assert _verdict(make_nn(26, 3, 11, 5, born_2000=True), today) == "bad_birth_date"
    assert _verdict(make_nn(26, 3, 10, 5, born_2000=True), today) is None


def test_unknown_day_in_a_future_month_is_a_future_birth_date() -> None:
    today = date(2026, 3, 10)
    assert _verdict(make_nn(26, 11, 0, 5, born_2000=True), today) == "bad_birth_date"


def test_unknown_month_or_day_and_fictitious_dates_are_allowed() -> None:
    """The register uses month/day 00 for unknown parts and 1900/00/01-style fictitious dates."""
    for value in (
        make_nn(85, 0, 0, 33),
        make_nn(85, 7, 0, 33),
        make_nn(0, 0, 1, 33),  # fictitious 1900/00/01 (or 2000)
        make_nn(0, 20, 1, 33),  # BIS, birth date wholly unknown
        make_nn(0, 40, 1, 33),
    ):
        assert _verdict(value) is None
        assert nn.is_valid(value) or bis.is_valid(value)


def test_bis_numbers_are_recognised() -> None:
    """Catalogue #4: month +20 (sex unknown) or +40 (sex known) is a BIS number."""
    values = [make_nn(85, 27, 30, 33), make_nn(85, 47, 30, 33), make_nn(85, 7, 30, 33), make_nn(85, 20, 0, 1)]
    v = national_number.check(pa.array(values), TODAY)
    assert v.is_bis.tolist() == [True, True, False, True]
    assert not (v.bad_checksum | v.bad_birth_date | v.bad_format).any()
    assert [bis.is_valid(x) for x in values] == [True, True, False, True]


@pytest.mark.parametrize("mm", [33, 39, 53, 60, 99, 13, 19])
def test_months_outside_every_range_are_rejected(mm: int) -> None:
    value = make_nn(85, mm, 10, 33)
    assert _verdict(value) == "bad_birth_date"
    assert not nn.is_valid(value) and not bis.is_valid(value)


def test_chunked_sliced_and_empty_input() -> None:
    values = [make_nn(85, 7, 30, s) for s in range(1, 40)] + ["bad"]
    whole = national_number.check(pa.array(values), TODAY)
    chunked = national_number.check(pa.chunked_array([values[:7], values[7:]]), TODAY)
    sliced = national_number.check(pa.array(["x", *values]).slice(1), TODAY)
    for other in (chunked, sliced):
        for name in ("bad_format", "bad_checksum", "bad_birth_date", "is_bis"):
            assert np.array_equal(getattr(whole, name), getattr(other, name)), name
    assert int(whole.bad_format.sum()) == 1
    empty = national_number.check(pa.array([], pa.string()), TODAY)
    assert len(empty.bad_format) == 0 and len(empty.is_bis) == 0


def test_a_million_numbers_in_well_under_a_few_seconds() -> None:
    """The reason it is vectorised (performance-floors.md: ~0.5 s for 1M)."""
    import time

    values = pa.array([make_nn(85, 7, 30, s % 997 + 1) for s in range(20_000)] * 50)
    start = time.perf_counter()
    v = national_number.check(values, TODAY)
    elapsed = time.perf_counter() - start
    assert len(v.bad_format) == 1_000_000
    assert not v.bad_checksum.any()
    assert elapsed < 5.0


def test_verdicts_of_one_column_are_computed_once_then_forgotten() -> None:
    column = pa.array([make_nn(85, 7, 30, 33), None, "12345"], pa.string())
    first = national_number.check_once(column, TODAY)
    assert national_number.check_once(pa.array(column.to_pylist(), pa.string()), TODAY) is first
    assert national_number.check_once(column, date(2026, 1, 1)) is not first  # another day
    other = pa.array([make_nn(85, 7, 30, 33)], pa.string())
    assert len(national_number.check_once(other, TODAY).bad_checksum) == 1
    national_number.forget()
    assert national_number._last == []
