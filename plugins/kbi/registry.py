"""The recipients registry (interfaces.md §2): load, validate, and who may receive what today.

A structural error anywhere in the file rejects the whole registry with a message that names the
entry and the field: a half-read registry could send a list to the wrong place. Whether a valid
entry may receive on a given day (P1 scope, P5 protocol window) is decided per municipality, with
a reason that goes to the run summary and the ledger.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from dataclasses import dataclass
from datetime import date
from pathlib import Path, PurePosixPath
from typing import ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from kbi import reference

# P2: the fields the decree allows, in the canonical column order of interfaces.md §3.
CANONICAL_FIELDS = (
    "rijksregisternummer",
    "naam",
    "voornaam",
    "inburgeringscontract_ondertekend",
    "attest_inburgering_behaald",
)
TEMPLATE_FIELDS = ("rijksregisternummer", "inburgeringscontract_ondertekend", "attest_inburgering_behaald")

# P5: a terminated protocol still runs for 12 months after notice (art. 12).
NOTICE_MONTHS = 12

_E164 = re.compile(r"^\+[1-9][0-9]{7,14}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_FPR = re.compile(r"^[0-9A-F]{40}$")


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """YAML's safe loader with two changes for a file that decides who receives personal data:
    dates stay text (so pydantic names the entry and field of ``2024-02-30``) and a key given
    twice in one mapping is an error (a second ``fingerprint:`` must not replace the first)."""

    yaml_implicit_resolvers: ClassVar[dict] = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[object] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


class RegistryError(ValueError):
    """The registry cannot be used; the message names the entry and field at fault."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Protocol(_Model):
    signed_on: date
    in_force_from: date
    terminated_on: date | None = None
    fields: tuple[str, ...]

    @field_validator("fields")
    @classmethod
    def _known_fields(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [f for f in value if f not in CANONICAL_FIELDS]
        if unknown:
            raise ValueError(f"unknown field(s) {unknown}; allowed: {list(CANONICAL_FIELDS)}")
        if len(set(value)) != len(value):
            raise ValueError("a field is listed twice")
        if "rijksregisternummer" not in value:
            raise ValueError("rijksregisternummer is always delivered and must be listed")
        # Normalise to the canonical order: the file's column order never depends on YAML order.
        return tuple(f for f in CANONICAL_FIELDS if f in value)

    @model_validator(mode="after")
    def _dates_in_order(self) -> Protocol:
        if self.in_force_from < self.signed_on:
            raise ValueError("in_force_from is before signed_on")
        if self.terminated_on and self.terminated_on < self.signed_on:
            raise ValueError("terminated_on is before signed_on")
        return self


class Contacts(_Model):
    email: tuple[str, ...] = Field(min_length=1)
    sms: tuple[str, ...] = Field(min_length=1)

    @field_validator("email")
    @classmethod
    def _emails(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [v for v in value if not _EMAIL.match(v)]
        if bad:
            raise ValueError(f"not an e-mail address: {bad}")
        return value

    @field_validator("sms")
    @classmethod
    def _phones(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [v for v in value if not _E164.match(v)]
        if bad:
            raise ValueError(f"not an international phone number (+32…): {bad}")
        return value


class Encryption(_Model):
    mode: Literal["pubkey", "passphrase"]
    fingerprint: str | None = None
    key_file: str | None = None

    @field_validator("fingerprint")
    @classmethod
    def _fingerprint(cls, value: str | None) -> str | None:
        if value is None:
            return None
        normalised = value.replace(" ", "").upper()
        if not _FPR.match(normalised):
            raise ValueError("must be the 40 hexadecimal digits of the key's fingerprint")
        return normalised

    @model_validator(mode="after")
    def _mode_fields(self) -> Encryption:
        if self.mode == "pubkey" and not (self.fingerprint and self.key_file):
            raise ValueError("pubkey mode needs both fingerprint and key_file")
        if self.mode == "passphrase" and (self.fingerprint or self.key_file):
            raise ValueError("passphrase mode takes no fingerprint or key_file (a fresh passphrase per file)")
        return self


class Sftp(_Model):
    inbox: str

    @field_validator("inbox")
    @classmethod
    def _inbox(cls, value: str) -> str:
        path = PurePosixPath(value)
        if not path.is_absolute() or ".." in path.parts or value != str(path):
            raise ValueError("must be a normalised absolute path such as /44021/inbox")
        return value


class Recipient(_Model):
    nis_code: str = Field(pattern=r"^[0-9]{5}$")
    name: str = Field(min_length=1)
    protocol: Protocol
    contacts: Contacts
    encryption: Encryption
    sftp: Sftp

    @property
    def label(self) -> str:
        return f"{self.nis_code} {self.name}"

    def key_path(self, registry_dir: Path) -> Path | None:
        if self.encryption.key_file is None:
            return None
        path = Path(self.encryption.key_file)
        return path if path.is_absolute() else registry_dir / path


@dataclass(frozen=True)
class Registry:
    recipients: dict[str, Recipient]
    path: Path
    version: str  # content hash, plus the git commit when the file is under version control

    @property
    def directory(self) -> Path:
        return self.path.parent


def _describe_entry(raw: object, index: int) -> str:
    if isinstance(raw, dict) and raw.get("nis_code"):
        return f"entry {index + 1} (nis_code {raw.get('nis_code')}, {raw.get('name', '?')})"
    return f"entry {index + 1}"


def _format_errors(where: str, exc: ValidationError) -> list[str]:
    lines = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in err["loc"]) or "(entry)"
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"{where}: {loc}: {msg}")
    return lines


def _git_commit(path: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "log", "-1", "--format=%H", "--", path.name],
            cwd=path.parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _entry(r: Recipient) -> str:
    return f"entry nis_code {r.nis_code} ({r.name})"


def _cross_checks(recipients: list[Recipient]) -> list[str]:
    """Checks across entries and against the reference list: each one guards a misdirected file."""
    errors: list[str] = []
    known = reference.municipalities()
    seen: dict[str, dict[str, str]] = {"nis_code": {}, "inbox": {}, "fingerprint": {}}
    for r in recipients:
        where = _entry(r)
        muni = known.get(r.nis_code)
        if muni is None:
            errors.append(f"{where}: nis_code: not in the 2025 municipality reference list")
        elif muni.name.casefold() != r.name.casefold():
            # A typo in a NIS code would send one municipality's list to another.
            errors.append(f"{where}: name: the reference list calls {r.nis_code} {muni.name!r}")
        if r.nis_code not in PurePosixPath(r.sftp.inbox).parts:
            errors.append(f"{where}: sftp.inbox: must contain the NIS code as a path component")
        for key, value in (
            ("nis_code", r.nis_code),
            ("inbox", r.sftp.inbox),
            ("fingerprint", r.encryption.fingerprint),
        ):
            if value is None:
                continue
            if value in seen[key]:
                errors.append(f"{where}: {key}: also used by nis_code {seen[key][value]}")
            seen[key][value] = r.nis_code
    return errors


def missing_key_files(reg: Registry) -> list[str]:
    """Entries whose key file is not there. Not a fault of the registry's structure: a run refuses
    just those municipalities (P6, key_missing) and delivers the others; ``kbi registry check``
    reports them."""
    missing = []
    for r in reg.recipients.values():
        key_path = r.key_path(reg.directory)
        if key_path is not None and not key_path.is_file():
            where = _entry(r)
            missing.append(f"{where}: encryption.key_file: {r.encryption.key_file} does not exist")
    return missing


def parse(text: str, path: Path) -> Registry:
    """Validate registry YAML text; every problem is reported at once, each naming its entry."""
    try:
        raw = yaml.load(text, Loader=_Loader)  # noqa: S506 - a safe loader (C speed where available)
    except yaml.YAMLError as exc:
        raise RegistryError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, list):
        raise RegistryError(f"{path}: must be a YAML list of recipient entries")
    errors: list[str] = []
    recipients: list[Recipient] = []
    for index, item in enumerate(raw):
        where = _describe_entry(item, index)
        if not isinstance(item, dict):
            errors.append(f"{where}: must be a mapping")
            continue
        try:
            recipients.append(Recipient.model_validate(item))
        except ValidationError as exc:
            errors.extend(_format_errors(where, exc))
    errors.extend(_cross_checks(recipients))
    if errors:
        raise RegistryError(f"{path}: {len(errors)} problem(s):\n  " + "\n  ".join(errors))
    return Registry({r.nis_code: r for r in recipients}, path, _version(text, path))


def _content(text: str) -> str:
    return f"sha256:{hashlib.sha256(text.encode('utf-8')).hexdigest()[:16]}"


def _version(text: str, path: Path) -> str:
    commit = _git_commit(path) if path.exists() else None
    return _content(text) + (f" git:{commit[:12]}" if commit else "")


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RegistryError(f"{path}: cannot read the registry: {exc.strerror}") from None


def load(path: Path) -> Registry:
    return parse(_read(path), path)


def version(path: Path) -> str:
    """The registry's version as ``load`` reports it, without parsing the file."""
    return _version(_read(path), path)


def changed_since(path: Path, planned: str) -> str | None:
    """The registry's version now if its content is not that of the ``planned`` version, else
    None. Only the content decides, so that each of a run's 285 deliveries does not start a git
    process for the commit part of the version."""
    text = _read(path)
    return None if _content(text) == planned.split(" ", 1)[0] else _version(text, path)


# --- the registry as the run's plan validated it -------------------------------------------------
# Parsing and validating 285 entries costs ~80 ms of CPU; a yearly run's 285 deliver tasks each
# read their own entry from a JSON snapshot the plan wrote instead, after checking that the
# registry file is still the version the plan validated.


def write_snapshot(reg: Registry, out: Path) -> None:
    """The validated entries and their version, for ``planned_recipient`` (private: contacts)."""
    data = {
        "version": reg.version,
        "recipients": {nis: r.model_dump(mode="json") for nis, r in reg.recipients.items()},
    }
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    tmp.chmod(0o600)
    tmp.replace(out)


def planned_recipient(snapshot: Path, nis_code: str, expected_version: str) -> Recipient:
    """``nis_code``'s entry as the plan validated it; refuses a snapshot of another version."""
    data = json.loads(snapshot.read_text(encoding="utf-8"))
    if data.get("version") != expected_version:
        raise RegistryError(f"{snapshot}: holds registry {data.get('version')}, not {expected_version}")
    entry = data["recipients"].get(nis_code)
    if entry is None:
        raise RegistryError(f"{snapshot}: no entry for nis_code {nis_code}")
    return Recipient.model_validate(entry)


# --- who may receive on a given day ---------------------------------------------------------


@dataclass(frozen=True)
class Eligibility:
    nis_code: str
    name: str
    eligible: bool
    rule: str | None = None  # the protocol rule that refuses (P1, P5, ...)
    reason: str | None = None


def add_months(d: date, months: int) -> date:
    month = d.month - 1 + months
    year = d.year + month // 12
    month = month % 12 + 1
    # clamp 29-31 to the month's last day
    for day in (d.day, 30, 29, 28):
        try:
            return date(year, month, day)
        except ValueError:
            continue
    raise AssertionError("unreachable")


def protocol_end(protocol: Protocol) -> date | None:
    """The first day the protocol no longer applies: notice + 12 months (P5)."""
    return add_months(protocol.terminated_on, NOTICE_MONTHS) if protocol.terminated_on else None


def eligibility(recipient: Recipient, on: date) -> Eligibility:
    """P1 scope and P5 window for one registry entry on the day of delivery."""
    muni = reference.municipalities().get(recipient.nis_code)
    base = {"nis_code": recipient.nis_code, "name": recipient.name}
    if muni is None:
        return Eligibility(
            **base, eligible=False, rule="P1", reason="NIS code not in the 2025 reference list"
        )
    if not muni.is_flemish:
        return Eligibility(
            **base,
            eligible=False,
            rule="P1",
            reason="Brussels municipality: not under the Flemish decree, receives nothing",
        )
    proto = recipient.protocol
    if on < proto.in_force_from:
        return Eligibility(
            **base,
            eligible=False,
            rule="P5",
            reason=f"protocol not yet in force (from {proto.in_force_from})",
        )
    end = protocol_end(proto)
    if end is not None and on >= end:
        return Eligibility(
            **base,
            eligible=False,
            rule="P5",
            reason=f"protocol terminated (notice {proto.terminated_on}, ended {end})",
        )
    return Eligibility(**base, eligible=True)
