"""OpenPGP through python-gnupg over a real gpg: isolated keyrings, pinned fingerprints (P6, P12).

- Every keyring is a fresh private directory (never the user's ``~/.gnupg``), gpg runs with
  ``--no-autostart`` (no agent is left behind) and never looks a key up anywhere.
- ``pubkey`` mode: the key file is imported and the key used must be exactly the pinned
  fingerprint. Revoked, expired, weak (RSA/DSA/Elgamal below 3072 bits) or encryption-incapable
  keys are refused with a reason. After encryption the packet list is read back: the file is
  encrypted to the pinned key's encryption subkey(s) and to nothing else.
- ``passphrase`` mode: a fresh random passphrase per file, symmetric AES-256, handed to gpg on its
  standard input by python-gnupg (never on a command line, never on disk). Its key-derivation work
  factor is low on purpose: it stretches weak human passwords, and this one has 138 random bits.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import gnupg

from kbi.errors import KbiError

MIN_BITS = 3072
# OpenPGP public-key algorithm ids whose strength is their bit length (RSA, Elgamal, DSA).
_BITS_MATTER = {"1", "2", "3", "16", "17", "20"}
_ALGORITHM = {"1": "RSA", "2": "RSA", "3": "RSA", "16": "Elgamal", "17": "DSA", "18": "ECDH", "19": "ECDSA"}
_ALGORITHM |= {"22": "EdDSA", "20": "Elgamal"}

# Easy to read out and type on a phone: lower case and digits without look-alikes (0/o, 1/l/i).
PASSPHRASE_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # noqa: S105 - an alphabet, not a secret
PASSPHRASE_GROUPS = 7
PASSPHRASE_GROUP_LEN = 4  # 28 symbols of 31: 138 bits of entropy


class KeyRefused(KbiError):
    """This municipality's key cannot be used; ``code`` is stable, the message says why."""

    def __init__(self, code: str, message: str):
        self.code = code
        super().__init__(message)


class EncryptionFailed(KbiError):
    pass


class StagingFull(KbiError):
    """The staging area has no room for a delivery's keyring and ciphertext (catalogue 26): a
    passing fault, retried; nothing partial is left behind."""


# Room a delivery needs besides its ciphertext: the throwaway keyring and gpg's own files.
KEYRING_ROOM = 1 << 20


def ensure_room(directory: Path, plaintext_bytes: int, file_name: str) -> None:
    """Refuse to start when the staging area cannot hold the keyring and the ciphertext (at most
    the plaintext's size plus OpenPGP's framing): gpg failing half-way on a full disk would
    otherwise read as an unusable key."""
    free = shutil.disk_usage(directory).free
    if free < plaintext_bytes + KEYRING_ROOM:
        raise StagingFull(
            f"the staging area has {free // 1024} KiB free, too little for {file_name} "
            f"({(plaintext_bytes + KEYRING_ROOM) // 1024} KiB needed); free space and retry"
        )


@dataclass(frozen=True)
class KeyCheck:
    fingerprint: str
    algorithm: str
    bits: int
    expires: date | None
    encryption_subkeys: tuple[str, ...]  # long key ids of the usable encryption subkeys

    def expires_within(self, today: date, days: int) -> bool:
        return self.expires is not None and (self.expires - today).days <= days


def new_passphrase() -> str:
    """A fresh passphrase: 7 groups of 4 characters, 138 bits, no characters a phone mangles."""
    groups = (
        "".join(secrets.choice(PASSPHRASE_ALPHABET) for _ in range(PASSPHRASE_GROUP_LEN))
        for _ in range(PASSPHRASE_GROUPS)
    )
    return "-".join(groups)


def keyring(home: Path) -> gnupg.GPG:
    """A private, empty-or-existing keyring directory with gpg's safe options."""
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(home, 0o700)
    return gnupg.GPG(
        gnupghome=str(home),
        options=["--no-autostart", "--no-auto-key-retrieve", "--auto-key-locate", "local", "--no-encrypt-to"],
    )


def remove_keyring(home: Path) -> None:
    """Remove a keyring directory (and stop an agent, should one have been started anyway)."""
    if home.exists():
        # Keyrings are opened with --no-autostart: an agent runs only if something started one
        # anyway, and then its socket is in the directory (gpgconf costs a process, 285 times a run).
        if any(home.glob("S.gpg-agent*")):
            subprocess.run(
                ["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], capture_output=True, check=False
            )
        shutil.rmtree(home, ignore_errors=True)


def _as_date(epoch: str) -> date | None:
    return datetime.fromtimestamp(int(epoch), UTC).date() if epoch else None


def check_key(gpg: gnupg.GPG, key_file: Path, pinned: str, today: date, min_bits: int = MIN_BITS) -> KeyCheck:
    """Import ``key_file`` and return the pinned key's properties, or refuse it with the reason."""
    pinned = pinned.replace(" ", "").upper()
    if not key_file.is_file():
        raise KeyRefused("key_missing", f"key file {key_file.name} is missing")
    if any(Path(gpg.gnupghome).glob("pubring.*")):
        raise ValueError("check_key needs a fresh, empty keyring (a reused one would mix keys)")
    # Importing first is safe: the keyring is private to this check and only the pinned
    # fingerprint is ever used for encryption.
    imported = gpg.import_keys_file(str(key_file))
    in_keyring = gpg.list_keys()
    primaries = {k["fingerprint"].upper() for k in in_keyring}
    if not imported.count or not primaries:
        raise KeyRefused("key_malformed", f"key file {key_file.name} holds no readable OpenPGP public key")
    if pinned not in primaries:
        raise KeyRefused(
            "fingerprint_mismatch",
            f"key file {key_file.name} does not hold the pinned key {pinned} "
            f"(it holds {', '.join(sorted(primaries))})",
        )
    if len(primaries) > 1:
        raise KeyRefused(
            "key_ambiguous", f"key file {key_file.name} holds {len(primaries)} keys; expected one"
        )
    listed = [k for k in in_keyring if k["fingerprint"].upper() == pinned]
    if not listed:
        raise KeyRefused("key_malformed", f"key {pinned} is not in the keyring after import")
    key = listed[0]
    if key["trust"] == "r":
        raise KeyRefused("key_revoked", f"key {pinned} is revoked")
    expires = _as_date(key["expires"])
    if key["trust"] == "e" or (expires is not None and expires <= today):
        raise KeyRefused("key_expired", f"key {pinned} expired on {expires}")
    usable: list[dict] = []
    for keyid, sub in (key.get("subkey_info") or {}).items():
        if "e" not in sub["cap"] or sub["trust"] in ("r", "e"):
            continue
        sub_expires = _as_date(sub["expires"])
        if sub_expires is not None and sub_expires <= today:
            continue
        usable.append({"keyid": keyid, **sub})
    primary_caps = {c for c in key["cap"] if c.islower()}  # upper case: the whole key's usable caps
    if "e" in primary_caps and "E" in key["cap"]:  # a primary key that encrypts itself
        usable.append({"keyid": key["keyid"], "algo": key["algo"], "length": key["length"]})
    if not usable:
        raise KeyRefused("key_cannot_encrypt", f"key {pinned} has no valid encryption (sub)key")
    for part in [key, *usable]:
        if part["algo"] in _BITS_MATTER and int(part["length"]) < min_bits:
            raise KeyRefused(
                "key_weak",
                f"key {pinned} uses {_ALGORITHM.get(part['algo'], part['algo'])}-{part['length']}, "
                f"below the {min_bits}-bit minimum",
            )
    return KeyCheck(
        fingerprint=pinned,
        algorithm=_ALGORITHM.get(key["algo"], key["algo"]),
        bits=int(key["length"]),
        expires=expires,
        encryption_subkeys=tuple(sorted(u["keyid"].upper() for u in usable)),
    )


def _write(out: Path, data: bytes) -> None:
    """The ciphertext under a temporary name (0600 from the start), renamed when whole; a failed
    write leaves nothing partial behind (catalogue 26)."""
    tmp = out.with_name(out.name + ".tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), 0o600)  # a leftover of a crashed attempt keeps its old mode
            fh.write(data)
        tmp.replace(out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StagingFull(
                f"the staging area ran out of space writing {out.name}; free space and retry"
            ) from None
        raise


def encrypt_to_key(gpg: gnupg.GPG, plaintext: bytes, key: KeyCheck, out: Path) -> None:
    """Encrypt to exactly the pinned key; verify the recipients of the result before keeping it."""
    # always_trust = "--trust-model always": the fingerprint was checked against the registry,
    # which is the trust decision (external validation); gpg's web of trust plays no part.
    result = gpg.encrypt(plaintext, key.fingerprint, armor=False, always_trust=True)
    if not result.ok:
        raise EncryptionFailed(f"gpg refused to encrypt to {key.fingerprint}: {result.status}")
    recipients = {r.upper() for r in gpg.get_recipients(result.data)}
    if not recipients or not recipients <= set(key.encryption_subkeys):
        raise EncryptionFailed(
            f"the encrypted file is addressed to {sorted(recipients)}, not only to the pinned key's "
            f"encryption subkey(s) {list(key.encryption_subkeys)}"
        )
    _write(out, result.data)


def encrypt_with_passphrase(gpg: gnupg.GPG, plaintext: bytes, passphrase: str, out: Path) -> None:
    """Symmetric AES-256 with ``passphrase``; verifies the cipher and that no key can open it."""
    if any(ch in passphrase for ch in "\r\n\0"):
        raise ValueError("a passphrase never contains line breaks or NUL")
    result = gpg.encrypt(
        plaintext,
        None,
        symmetric="AES256",
        passphrase=passphrase,
        armor=False,
        extra_args=["--s2k-mode", "3", "--s2k-digest-algo", "SHA256", "--s2k-count", "65536"],
    )
    if not result.ok:
        raise EncryptionFailed(f"gpg symmetric encryption failed: {result.status}")
    if "BEGIN_ENCRYPTION 2 9" not in result.stderr:  # MDC + cipher 9 = AES-256
        raise EncryptionFailed("gpg did not use AES-256 with integrity protection")
    if gpg.get_recipients(result.data):
        raise EncryptionFailed("a passphrase-encrypted file must not also be addressed to a key")
    _write(out, result.data)
