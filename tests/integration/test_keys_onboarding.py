"""`kbi keys`: onboarding and rotating a municipality's key (P6: pinned, never trusted on first
use, never replaced silently), with real keys made by gpg."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from datetime import date
from pathlib import Path

import gnupg
import pytest

from demo import keys as demo_keys
from kbi import cli, keys, registry

TODAY = date(2026, 12, 4)
ENTRY = """\
# the agency's registry
- nis_code: "44021"
  name: Gent
  protocol:
    signed_on: 2024-02-01
    in_force_from: 2024-03-01
    terminated_on: null
    fields: [rijksregisternummer, inburgeringscontract_ondertekend, attest_inburgering_behaald]
  contacts:
    email: [privacy@gent.example]
    sms: ["+32470000001"]
  encryption:
    mode: passphrase
  sftp:
    inbox: /44021/inbox
"""


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, demo_keys.KeyPair]:
    out = tmp_path_factory.mktemp("keys")
    return {
        kind: demo_keys.make_key(out, kind, f"Gemeente {kind}", f"{kind}@gent.example", kind)
        for kind in demo_keys.KINDS
    }


@pytest.fixture
def reg(tmp_path: Path) -> Path:
    path = tmp_path / "recipients.yaml"
    path.write_text(ENTRY)
    return path


def test_a_good_key_is_described_for_the_phone_call(made) -> None:
    report = keys.inspect(made["cv25519"].public_path, TODAY)
    assert report.fingerprint == made["cv25519"].fingerprint and report.warnings == []
    assert keys.grouped(report.fingerprint).count(" ") == 9  # ten groups of four


@pytest.mark.parametrize(
    ("kind", "why"),
    [
        ("rsa2048", "key_weak"),
        ("expired", "key_expired"),
        ("revoked", "key_revoked"),
        ("signonly", "key_cannot_encrypt"),
    ],
)
def test_unfit_keys_are_refused_with_the_reason(made, kind: str, why: str) -> None:
    with pytest.raises(keys.OnboardingError, match=why):
        keys.inspect(made[kind].public_path, TODAY)


def test_two_keys_in_one_file_are_refused(made, tmp_path: Path) -> None:
    both = tmp_path / "both.asc"
    both.write_text(made["cv25519"].public_path.read_text() + made["rsa3072"].public_path.read_text())
    with pytest.raises(keys.OnboardingError, match="holds 2 public keys"):
        keys.inspect(both, TODAY)


def test_a_key_with_two_encryption_subkeys_is_refused(made, tmp_path: Path) -> None:
    home = Path(tempfile.mkdtemp(prefix="kbi-test-gpg-"))
    try:
        gpg = gnupg.GPG(gnupghome=str(home))
        gpg.import_keys_file(str(made["cv25519"].secret_path))
        added = subprocess.run(
            ["gpg", "--homedir", str(home), "--batch", "--pinentry-mode", "loopback", "--passphrase", "",
             "--quick-add-key", made["cv25519"].fingerprint, "cv25519", "encr", "1y"],
            capture_output=True, check=False,
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
        two = tmp_path / "two.asc"
        two.write_text(gpg.export_keys(made["cv25519"].fingerprint))
    finally:
        subprocess.run(
            ["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], capture_output=True, check=False
        )
        shutil.rmtree(home, ignore_errors=True)
    with pytest.raises(keys.OnboardingError, match="2 encryption subkeys in use"):
        keys.inspect(two, TODAY)


def test_onboarding_needs_the_confirmed_fingerprint(made, reg: Path, capsys) -> None:
    key = made["cv25519"]
    assert cli.main(["keys", "onboard", "44021", str(key.public_path), "--registry", str(reg)]) == 2
    out = capsys.readouterr().out
    assert keys.grouped(key.fingerprint) in out and "--confirm" in out
    assert reg.read_text() == ENTRY  # nothing written before the phone call
    wrong = "0" * 40
    assert (
        cli.main(
            ["keys", "onboard", "44021", str(key.public_path), "--registry", str(reg), "--confirm", wrong]
        )
        == 2
    )
    assert reg.read_text() == ENTRY
    grouped = keys.grouped(key.fingerprint)
    assert (
        cli.main(
            ["keys", "onboard", "44021", str(key.public_path), "--registry", str(reg), "--confirm", grouped]
        )
        == 0
    )
    entry = registry.load(reg).recipients["44021"]
    assert entry.encryption.mode == "pubkey" and entry.encryption.fingerprint == key.fingerprint
    assert (reg.parent / "keys" / "44021.asc").read_text() == key.public_path.read_text()
    assert reg.read_text().startswith("# the agency's registry\n")  # the header comment is kept


def test_rotation_is_never_silent(made, reg: Path, capsys) -> None:
    old, new = made["cv25519"], made["rsa3072"]
    keys.onboard(reg, "44021", old.public_path, TODAY, confirm=old.fingerprint)
    args = [
        "keys",
        "onboard",
        "44021",
        str(new.public_path),
        "--registry",
        str(reg),
        "--confirm",
        new.fingerprint,
    ]
    assert cli.main(args) == 1
    assert "never applied silently" in capsys.readouterr().err
    assert cli.main([*args, "--replace", "F" * 40]) == 1
    assert registry.load(reg).recipients["44021"].encryption.fingerprint == old.fingerprint
    assert cli.main([*args, "--replace", old.fingerprint]) == 0
    assert "rotated" in capsys.readouterr().out
    assert registry.load(reg).recipients["44021"].encryption.fingerprint == new.fingerprint
    assert (reg.parent / "keys" / f"44021.{old.fingerprint[-16:]}.retired.asc").exists()


def test_a_municipality_without_a_protocol_entry_is_refused(made, reg: Path) -> None:
    with pytest.raises(keys.OnboardingError, match="add its protocol entry first"):
        keys.onboard(reg, "11002", made["cv25519"].public_path, TODAY, confirm=made["cv25519"].fingerprint)
