"""OpenPGP key pairs for the demo municipalities and the tests, made with a real gpg.

The demo keeps each municipality's public key (what the agency pins) and its secret key (so a
file can be decrypted as the municipality would) under ``var/demo/keys/``. Secret keys are not
passphrase-protected: demo and test material only. Besides good keys it can make the bad kinds
the pipeline must refuse: expired, revoked, RSA-2048 (weak), sign-only (cannot encrypt).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import gnupg

KINDS = ("cv25519", "rsa3072", "rsa2048", "expired", "expiring", "revoked", "signonly")


@dataclass(frozen=True)
class KeyPair:
    fingerprint: str
    public_path: Path
    secret_path: Path


def _params(kind: str, name: str, email: str) -> str:
    head = {
        "cv25519": "Key-Type: eddsa\nKey-Curve: ed25519\nSubkey-Type: ecdh\nSubkey-Curve: cv25519\n",
        "expired": "Key-Type: eddsa\nKey-Curve: ed25519\nSubkey-Type: ecdh\nSubkey-Curve: cv25519\n",
        "expiring": "Key-Type: eddsa\nKey-Curve: ed25519\nSubkey-Type: ecdh\nSubkey-Curve: cv25519\n",
        "revoked": "Key-Type: eddsa\nKey-Curve: ed25519\nSubkey-Type: ecdh\nSubkey-Curve: cv25519\n",
        # The primary key signs only, so exactly one (sub)key encrypts, as onboarding requires.
        "rsa3072": "Key-Type: RSA\nKey-Length: 3072\nKey-Usage: sign\nSubkey-Type: RSA\nSubkey-Length: 3072\n"
        "Subkey-Usage: encrypt\n",
        "rsa2048": "Key-Type: RSA\nKey-Length: 2048\nKey-Usage: sign\nSubkey-Type: RSA\nSubkey-Length: 2048\n"
        "Subkey-Usage: encrypt\n",
        "signonly": "Key-Type: eddsa\nKey-Curve: ed25519\nKey-Usage: sign\n",
    }[kind]
    expire = {"expired": "1y", "expiring": "30d"}.get(kind, "0")
    return f"{head}Name-Real: {name}\nName-Email: {email}\nExpire-Date: {expire}\n%no-protection\n%commit\n"


def make_key(out_dir: Path, stem: str, name: str, email: str, kind: str = "cv25519") -> KeyPair:
    """Generate one key pair; ``stem.asc`` (public) and ``stem.secret.asc`` land in ``out_dir``."""
    if kind not in KINDS:
        raise ValueError(f"unknown key kind {kind!r}")
    out_dir.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="kbi-keygen-"))
    try:
        options: list[str] = []  # key generation needs gpg-agent; it is stopped below
        if kind == "expired":
            # Made "in 2020" with one year of validity: expired ever since.
            options += ["--faked-system-time", "20200101T000000!"]
        gpg = gnupg.GPG(gnupghome=str(home), options=options)
        result = gpg.gen_key(_params(kind, name, email))
        fpr = str(result.fingerprint or "")
        if not fpr:
            raise RuntimeError(f"gpg could not generate a {kind} key: {result.stderr[-300:]}")
        if kind == "revoked":
            cert = (home / "openpgp-revocs.d" / f"{fpr}.rev").read_text()
            # gpg writes the certificate with a ':' before the armour header so it is not imported
            # by accident; importing it is exactly what we want here.
            gpg.import_keys(
                cert.replace(":-----BEGIN PGP PUBLIC KEY BLOCK-----", "-----BEGIN PGP PUBLIC KEY BLOCK-----")
            )
        public = out_dir / f"{stem}.asc"
        secret = out_dir / f"{stem}.secret.asc"
        public.write_text(gpg.export_keys(fpr))
        secret.write_text(gpg.export_keys(fpr, secret=True, expect_passphrase=False))
        secret.chmod(0o600)
        return KeyPair(fpr, public, secret)
    finally:
        subprocess.run(
            ["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], capture_output=True, check=False
        )
        shutil.rmtree(home, ignore_errors=True)


def decrypt(secret_key: Path | None, ciphertext: bytes, passphrase: str | None = None) -> bytes:
    """Decrypt as the municipality would: its secret key, or the passphrase from the SMS."""
    home = Path(tempfile.mkdtemp(prefix="kbi-decrypt-"))
    try:
        gpg = gnupg.GPG(gnupghome=str(home))
        if secret_key is not None:
            gpg.import_keys_file(str(secret_key))
        result = gpg.decrypt(ciphertext, passphrase=passphrase)
        if not result.ok:
            raise RuntimeError(f"decryption failed: {result.status}")
        return result.data
    finally:
        subprocess.run(
            ["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], capture_output=True, check=False
        )
        shutil.rmtree(home, ignore_errors=True)
