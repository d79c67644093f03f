"""Onboarding and rotating a municipality's OpenPGP key: one command for the data engineer.

    kbi keys onboard 44021 gent.asc                       checks the key, prints its fingerprint
    kbi keys onboard 44021 gent.asc --confirm <FPR>       … read back by phone: writes the registry
    kbi keys onboard 44021 new.asc --confirm <NEW> --replace <OLD>   rotation: never silent

The key must be strong (RSA/DSA/Elgamal ≥ 3072 bits, or ECC), not expired or revoked, able to
encrypt, with exactly one encryption subkey in use (so the municipality knows which private key
opens its files). The fingerprint is confirmed with the municipality on another channel before
it is pinned (P6: no trust on first use); a different key for a municipality that already has
one is applied only when the old fingerprint is named as well.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import yaml

from kbi import crypto, registry
from kbi.errors import KbiError

EXPIRY_WARNING_DAYS = 60


class OnboardingError(KbiError):
    pass


@dataclass(frozen=True)
class KeyReport:
    key: crypto.KeyCheck
    warnings: list[str] = field(default_factory=list)

    @property
    def fingerprint(self) -> str:
        return self.key.fingerprint


def grouped(fingerprint: str) -> str:
    """``ABCD EF01 …``: how a fingerprint is read out over the phone."""
    fpr = fingerprint.replace(" ", "").upper()
    return " ".join(fpr[i : i + 4] for i in range(0, len(fpr), 4))


def inspect(key_file: Path, today: date) -> KeyReport:
    """Check a key file for onboarding (stricter than at delivery: one encryption subkey)."""
    home = Path(tempfile.mkdtemp(prefix="kbi-onboard-"))
    try:
        scan = crypto.keyring(home / "scan")
        found = (
            [k["fingerprint"].upper() for k in scan.scan_keys(str(key_file))] if key_file.is_file() else []
        )
        if not key_file.is_file():
            raise OnboardingError(f"{key_file}: no such key file")
        if len(found) != 1:
            raise OnboardingError(f"{key_file.name} holds {len(found)} public keys; send exactly one")
        try:
            key = crypto.check_key(crypto.keyring(home / "check"), key_file, found[0], today)
        except crypto.KeyRefused as exc:
            raise OnboardingError(f"refused ({exc.code}): {exc}") from None
        if len(key.encryption_subkeys) != 1:
            raise OnboardingError(
                f"key {key.fingerprint} has {len(key.encryption_subkeys)} encryption subkeys in use; the "
                "municipality must revoke or expire all but one, so it knows which private key opens "
                "its files"
            )
        warnings = []
        if key.expires_within(today, EXPIRY_WARNING_DAYS):
            warnings.append(f"the key expires on {key.expires}: ask the municipality for a new key soon")
        return KeyReport(key, warnings)
    finally:
        crypto.remove_keyring(home / "scan")
        crypto.remove_keyring(home / "check")
        shutil.rmtree(home, ignore_errors=True)


@dataclass(frozen=True)
class Outcome:
    written: bool
    fingerprint: str
    previous: str | None
    message: str


def _header(text: str) -> str:
    lines = []
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            lines.append(line)
        else:
            break
    return "\n".join(lines).rstrip() + "\n" if lines else ""


def onboard(
    registry_path: Path,
    nis_code: str,
    key_file: Path,
    today: date,
    confirm: str | None = None,
    replace: str | None = None,
) -> Outcome:
    """Pin ``key_file`` for ``nis_code`` in the registry, once its fingerprint is confirmed."""
    text = registry_path.read_text(encoding="utf-8")
    entries = yaml.load(text, Loader=registry._Loader)  # noqa: S506 - the registry's own safe loader
    entry = next((e for e in entries if isinstance(e, dict) and e.get("nis_code") == nis_code), None)
    if entry is None:
        raise OnboardingError(
            f"{nis_code} has no entry in {registry_path.name}: add its protocol entry first (see the README)"
        )
    report = inspect(key_file, today)
    fpr = report.fingerprint
    current = (entry.get("encryption") or {}).get("fingerprint")
    current = current.replace(" ", "").upper() if current else None
    if current and current != fpr and (replace or "").replace(" ", "").upper() != current:
        raise OnboardingError(
            f"{nis_code} {entry.get('name')} already has key {grouped(current)} pinned. A different key "
            "is never applied silently: confirm the change with the municipality and pass "
            f"--replace {current}"
        )
    if (confirm or "").replace(" ", "").upper() != fpr:
        return Outcome(
            False,
            fpr,
            current,
            f"Key of {nis_code} {entry.get('name')}: {report.key.algorithm}-{report.key.bits}, expires "
            f"{report.key.expires or 'never'}.\nRead this fingerprint to the municipality by phone and have "
            f"them confirm it from their own copy:\n\n    {grouped(fpr)}\n\n"
            f"Then run again with --confirm {fpr}",
        )
    keys_dir = registry_path.parent / "keys"
    keys_dir.mkdir(exist_ok=True)
    target = keys_dir / f"{nis_code}.asc"
    if target.exists() and current and current != fpr:
        shutil.copy2(target, keys_dir / f"{nis_code}.{current[-16:]}.retired.asc")  # keep the history
    backup = registry_path.read_bytes()
    previous_key = target.read_bytes() if target.exists() else None
    shutil.copyfile(key_file, target)
    entry["encryption"] = {"mode": "pubkey", "fingerprint": fpr, "key_file": f"keys/{nis_code}.asc"}
    body = yaml.safe_dump(entries, sort_keys=False, allow_unicode=True, default_flow_style=False)
    registry_path.write_text(_header(text) + body, encoding="utf-8")
    try:
        registry.load(registry_path)
    except registry.RegistryError:
        registry_path.write_bytes(backup)
        if previous_key is None:
            target.unlink()
        else:
            target.write_bytes(previous_key)
        raise
    what = "rotated" if current and current != fpr else "pinned"
    return Outcome(True, fpr, current, f"{what} key {grouped(fpr)} for {nis_code} {entry.get('name')}")
