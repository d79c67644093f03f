"""The alerts summarise sends about failed deliveries: what each names (catalogue 41)."""

from __future__ import annotations

from kbi import pipeline
from kbi.ledger import Delivery

RUN = "manual__2027-01-15T06:00:00+00:00"


def _published(nis: str, mode: str, **sent: str) -> Delivery:
    return Delivery(
        delivery_id=f"annual:{nis}:{RUN}",
        run_id=RUN,
        nis_code=nis,
        kind="annual",
        period="2027",
        correction_ref=None,
        reference_date="2027-01-15",
        state="published",
        planned_at="2027-01-15T06:00:01Z",
        mode=mode,
        **sent,
    )


def _alerts(failed: list[Delivery]) -> list[tuple[str, str]]:
    sent: list[tuple[str, str]] = []
    pipeline._alert_announcements_owed(failed, RUN, lambda subject, text: sent.append((subject, text)))
    return sent


def test_each_published_file_is_named_with_what_it_still_owes() -> None:
    failed = [
        _published("44021", "pubkey"),
        _published("11002", "pubkey", sms_sent_at="2027-01-15T06:01:00Z"),
        _published("12025", "passphrase", sms_sent_at="2027-01-15T06:01:00Z"),
    ]
    [(subject, text)] = _alerts(failed)
    assert subject == f"[KBI] run {RUN[:24]}: 3 file(s) published but not announced"
    assert "11002 (e-mail receipt); 12025 (e-mail receipt); 44021 (SMS, e-mail receipt)" in text


def test_a_file_that_owes_nothing_is_not_named_and_alone_sends_no_alert() -> None:
    """Stopped after its receipt went but before it was marked announced: the rerun only marks it."""
    both_sent = _published(
        "44021", "pubkey", sms_sent_at="2027-01-15T06:01:00Z", mail_sent_at="2027-01-15T06:01:01Z"
    )
    assert _alerts([both_sent]) == []
    [(subject, text)] = _alerts([both_sent, _published("11002", "passphrase")])
    assert "1 file(s)" in subject and "11002 (e-mail receipt)" in text and "44021" not in text
