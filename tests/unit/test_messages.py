"""kbi.messages: the Dutch SMS and e-mail texts (P6, P7, P9, P10; catalogue #43).

The receipt carries the disclaimer, the delete-by date, how to report errors within two weeks,
and only file names, counts, checksums, fingerprints and dates. The passphrase appears in its own
SMS and nowhere else; the receipt cannot even take it as a parameter.
"""

from __future__ import annotations

import inspect
import re

import pytest

from kbi import messages
from tests.helpers import has_eleven_digit_run

FILE = "inburgeraars_44021_2026-01-15.csv.gpg"
SHA = "3f" * 32
FPR = "0123456789ABCDEF0123456789ABCDEF01234567"
PASSPHRASE = "abcd-efgh-jkmn-pqrs-tuvw-xyz2-3456"


def _receipt(mode: str = "pubkey", **over: object) -> messages.Mail:
    values: dict[str, object] = {
        "municipality": "Gent",
        "reference_date": "2026-01-15",
        "file_name": FILE,
        "inbox": "/44021/inbox",
        "rows": 1234,
        "sha256": SHA,
        "mode": mode,
        "fingerprint": FPR if mode == "pubkey" else None,
        "delete_by": "2031-12-04",
    }
    values.update(over)
    return messages.receipt(**values)  # type: ignore[arg-type]


def _parts(mail: messages.Mail) -> list[str]:
    return [mail.subject, mail.text, mail.html]


def test_sms_pubkey_lets_the_municipality_verify() -> None:
    """P6: file name, SHA-256 and fingerprint travel by the separate channel."""
    text = messages.sms_pubkey(FILE, SHA, FPR)
    assert FILE in text and SHA in text and FPR in text
    assert "wachtwoord" not in text.lower()


def test_sms_passphrase_carries_the_passphrase_and_file_name() -> None:
    text = messages.sms_passphrase(FILE, PASSPHRASE)
    assert PASSPHRASE in text and FILE in text
    assert "\n" not in text and "\r" not in text  # one line, read out or copied whole


@pytest.mark.parametrize("mode", ["pubkey", "passphrase"])
def test_receipt_has_the_disclaimer_in_both_parts(mode: str) -> None:
    """P7: any mail that announces a file carries the disclaimer."""
    mail = _receipt(mode)
    assert messages.DISCLAIMER in mail.text
    assert messages.DISCLAIMER in mail.html
    assert "verwijder deze e-mail dan onmiddellijk" in messages.DISCLAIMER


@pytest.mark.parametrize("mode", ["pubkey", "passphrase"])
def test_receipt_states_the_delete_by_date(mode: str) -> None:
    """P10: the receipt says by when the municipality must delete the data (5 years)."""
    mail = _receipt(mode)
    for part in (mail.text, mail.html):
        assert "2031-12-04" in part
        assert "5 jaar" in part


def test_receipt_says_how_to_report_errors_within_two_weeks(monkeypatch: pytest.MonkeyPatch) -> None:
    """P9: the contact point and the two-week term."""
    monkeypatch.setenv("KBI_ERROR_REPORT_URL", "https://example.invalid/meld-een-fout")
    mail = _receipt()
    for part in (mail.text, mail.html):
        assert "https://example.invalid/meld-een-fout" in part
        assert "binnen twee weken" in part
        assert "geen rijksregisternummers of namen" in part  # the report itself holds no personal data


def test_receipt_facts() -> None:
    """interfaces.md §3: file name, inbox, row count, SHA-256, key fingerprint."""
    mail = _receipt()
    for part in (mail.text, mail.html):
        for fact in (FILE, "/44021/inbox", "1234", SHA, FPR):
            assert fact in part
    assert "Gent" in mail.subject and "2026-01-15" in mail.subject


def test_passphrase_mode_receipt_points_to_the_sms_and_names_no_key() -> None:
    mail = _receipt("passphrase")
    for part in (mail.text, mail.html):
        assert "per sms" in part
        assert FPR not in part
        assert "vingerafdruk" not in part


def test_the_receipt_cannot_carry_a_passphrase() -> None:
    """P6: the passphrase goes by SMS only: the mail template is not even given it."""
    params = inspect.signature(messages.receipt).parameters
    assert not any("pass" in name or "secret" in name for name in params)


def test_correction_receipt() -> None:
    mail = _receipt(correction_ref="M-2026-017")
    assert "correctie M-2026-017" in mail.subject
    assert "gecorrigeerde lijst (melding M-2026-017)" in mail.text


def test_html_part_escapes_values() -> None:
    mail = _receipt(municipality="<script>alert(1)</script>")
    assert "<script>" not in mail.html
    assert "&lt;script&gt;" in mail.html
    assert "<script>alert(1)</script>" in mail.text  # plain text is not HTML


def test_a_missing_value_is_an_error_not_an_empty_string() -> None:
    with pytest.raises(TypeError):
        messages.receipt(municipality="Gent")  # type: ignore[call-arg]


@pytest.mark.parametrize("mode", ["pubkey", "passphrase"])
def test_no_personal_data_shapes_in_any_text(mode: str) -> None:
    """Catalogue #43: no national-number shape in any text (dates, hashes and counts only)."""
    texts = [
        *_parts(_receipt(mode)),
        messages.sms_pubkey(FILE, SHA, FPR),
        messages.sms_passphrase(FILE, PASSPHRASE),
    ]
    assert not any(has_eleven_digit_run(t) for t in texts)


def test_texts_are_dutch() -> None:
    mail = _receipt()
    assert mail.html.startswith("<!DOCTYPE html>") and 'lang="nl"' in mail.html
    assert re.search(r"\bBeste\b", mail.text)
    assert "staat klaar" in mail.subject
