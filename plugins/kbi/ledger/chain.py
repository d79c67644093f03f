"""Tamper evidence: each event's hash covers the previous hash and the event itself.

With a key (HMAC-SHA256, the key kept outside the ledger database) someone who can write the
database still cannot forge a consistent chain; without a key the chain still shows accidental or
naive edits, deletions and reorderings.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

GENESIS = "0" * 64
# Eleven digits in a row is the shape of a national number: never written to the ledger (P12).
_NATIONAL_NUMBER_SHAPE = re.compile(r"(?<![0-9A-Fa-f])[0-9]{11}(?![0-9A-Fa-f])")


class PersonalDataRefused(ValueError):
    """A value bound for the ledger looks like personal data."""


def canonical(payload: Mapping[str, object]) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    if _NATIONAL_NUMBER_SHAPE.search(text):
        raise PersonalDataRefused("a ledger event carried a value shaped like a national number")
    return text


def link_hash(prev_hash: str, body: str, key: bytes | None) -> str:
    message = f"{prev_hash}\n{body}".encode()
    if key:
        return hmac.new(key, message, hashlib.sha256).hexdigest()
    return hashlib.sha256(message).hexdigest()


def event_body(event: Mapping[str, object]) -> str:
    """The hashed part of an event row: everything but its own hash and the previous hash."""
    return canonical(
        {
            "seq": int(event["seq"]),
            "recorded_at": event["recorded_at"],
            "event_type": event["event_type"],
            "run_id": event["run_id"],
            "nis_code": event["nis_code"],
            "delivery_id": event["delivery_id"],
            "detail": event["detail"],
        }
    )


@dataclass(frozen=True)
class ChainBreak:
    seq: int
    problem: str


def verify(events: Iterable[Mapping[str, object]], key: bytes | None) -> ChainBreak | None:
    """The first broken link, or None when the whole chain holds."""
    prev = GENESIS
    expected_seq = 1
    for event in events:
        seq = int(event["seq"])
        if seq != expected_seq:
            return ChainBreak(seq, f"expected event {expected_seq} here: an event was deleted or moved")
        if event["prev_hash"] != prev:
            return ChainBreak(seq, "does not link to the event before it")
        if link_hash(prev, event_body(event), key) != event["hash"]:
            return ChainBreak(seq, "its content does not match its hash: the event was edited")
        prev = str(event["hash"])
        expected_seq += 1
    return None
