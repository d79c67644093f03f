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
# Hashes, fingerprints and key ids are long hex runs that may hold eleven digits by chance.
_HEX_TOKEN = re.compile(r"(?<![0-9A-Za-z])[0-9A-Fa-f]{16,}(?![0-9A-Za-z])")
# A national or BIS number, bare (85073003328) or written the usual ways (85.07.30-033.28).
_NUMBER_SHAPE = re.compile(
    r"(?<![0-9])([0-9]{2})[ .]?([0-9]{2})[ .]?([0-9]{2})[ .-]?([0-9]{3})[ .]?([0-9]{2})(?![0-9])"
)


class PersonalDataRefused(ValueError):
    """A value bound for the ledger looks like personal data."""


def _is_national_number(digits: str) -> bool:
    first9, check = int(digits[:9]), int(digits[9:])
    return 97 - first9 % 97 == check or 97 - (2_000_000_000 + first9) % 97 == check


def contains_national_number(text: str) -> bool:
    """Whether ``text`` holds something that passes a national/BIS number's checksum (P12)."""
    text = _HEX_TOKEN.sub(" ", text)
    return any(_is_national_number("".join(m.groups())) for m in _NUMBER_SHAPE.finditer(text))


def canonical(payload: Mapping[str, object]) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    if contains_national_number(text):
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


def head_mac(seq: int, hash_: str, key: bytes | None) -> str:
    return hmac.new(key, f"head\n{seq}\n{hash_}".encode(), hashlib.sha256).hexdigest() if key else ""


def verify(
    events: Iterable[Mapping[str, object]], key: bytes | None, head: Mapping[str, object] | None = None
) -> ChainBreak | None:
    """The first broken link, or None when the whole chain holds (and ends at ``head``)."""
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
    last = expected_seq - 1
    if head is None:
        return ChainBreak(last + 1, "the chain's head record is missing") if last else None
    if head_mac(int(head["seq"]), str(head["hash"]), key) != head["mac"]:
        return ChainBreak(int(head["seq"]), "the chain's head record was altered")
    if int(head["seq"]) != last or head["hash"] != prev:
        return ChainBreak(
            min(last, int(head["seq"])) + 1,
            f"the chain ends at event {last} but its head says {head['seq']}: events at the end were deleted",
        )
    return None
