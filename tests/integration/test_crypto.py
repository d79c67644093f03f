"""kbi.crypto with a real gpg: isolated keyrings, refusals with stable codes, both modes (P6, P12).

Key pairs come from demo.keys (real gpg). The municipality's side is played by demo.keys.decrypt;
what a file is addressed to is read back independently with ``gpg --list-packets`` on an empty
home. Catalogue rows #17-#24 refer to reliability-catalogue.md.
"""

from __future__ import annotations

import math
import os
import re
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import gnupg
import pytest

from demo import keys
from kbi import crypto

TODAY = date.today()
PLAINTEXT = "\ufeffrijksregisternummer;inburgeringscontract_ondertekend\r\nx;ja\r\n".encode()


@pytest.fixture(scope="module")
def keydir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("keys")


@pytest.fixture(scope="module")
def pairs(keydir: Path) -> dict[str, keys.KeyPair]:
    made = {
        kind: keys.make_key(keydir, kind, f"Gemeente {kind}", f"{kind}@example.invalid", kind)
        for kind in keys.KINDS
    }
    made["other"] = keys.make_key(keydir, "other", "Andere gemeente", "other@example.invalid", "cv25519")
    return made


@pytest.fixture
def gpg(tmp_path: Path) -> Iterator[gnupg.GPG]:
    home = tmp_path / "gnupg"
    yield crypto.keyring(home)
    crypto.remove_keyring(home)


def _empty_home(tmp_path: Path) -> Path:
    home = tmp_path / "inspect-home"
    home.mkdir(mode=0o700, exist_ok=True)
    return home


def _packets(tmp_path: Path, path: Path) -> str:
    """``gpg --list-packets`` of a file, on an empty home: what the file is addressed to."""
    out = subprocess.run(
        [
            "gpg",
            "--homedir",
            str(_empty_home(tmp_path)),
            "--batch",
            "--no-autostart",
            "--list-packets",
            str(path),
        ],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=30,
        check=False,
    )
    return out.stdout + out.stderr


def _encryption_subkeys(tmp_path: Path, public: Path) -> set[str]:
    """The long key ids of a public key file's encryption-capable subkeys (gpg --show-keys)."""
    out = subprocess.run(
        [
            "gpg",
            "--homedir",
            str(_empty_home(tmp_path)),
            "--batch",
            "--no-autostart",
            "--with-colons",
            "--show-keys",
            str(public),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    return {f[4] for f in (line.split(":") for line in out.splitlines()) if f[0] == "sub" and "e" in f[11]}


# --- keyring isolation ----------------------------------------------------------------------------


def test_keyring_is_a_private_fresh_directory_not_the_users(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pairs: dict[str, keys.KeyPair]
) -> None:
    """P12: never ~/.gnupg nor $GNUPGHOME; the directory is 0700 even when it existed as 0755."""
    fake_home = tmp_path / "home"
    fake_home.mkdir()
    monkeypatch.setenv("HOME", str(fake_home))
    monkeypatch.setenv("GNUPGHOME", str(tmp_path / "users-gnupghome"))
    home = tmp_path / "ring"
    home.mkdir()
    os.chmod(home, 0o755)  # noqa: S103 - a too-open directory that keyring() must tighten
    gpg = crypto.keyring(home)
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert Path(gpg.gnupghome) == home
    key = crypto.check_key(gpg, pairs["cv25519"].public_path, pairs["cv25519"].fingerprint, TODAY)
    crypto.encrypt_to_key(gpg, PLAINTEXT, key, tmp_path / "out.gpg")
    crypto.encrypt_with_passphrase(gpg, PLAINTEXT, crypto.new_passphrase(), tmp_path / "sym.gpg")
    assert not (fake_home / ".gnupg").exists()
    assert not (tmp_path / "users-gnupghome").exists()
    assert any(home.iterdir())  # the keyring really was used
    crypto.remove_keyring(home)
    assert not home.exists()


def test_no_agent_is_left_running(tmp_path: Path, pairs: dict[str, keys.KeyPair]) -> None:
    """--no-autostart: encrypting in either mode starts no gpg-agent for the keyring."""
    home = tmp_path / "ring"
    gpg = crypto.keyring(home)
    key = crypto.check_key(gpg, pairs["cv25519"].public_path, pairs["cv25519"].fingerprint, TODAY)
    crypto.encrypt_to_key(gpg, PLAINTEXT, key, tmp_path / "out.gpg")
    crypto.encrypt_with_passphrase(gpg, PLAINTEXT, crypto.new_passphrase(), tmp_path / "sym.gpg")
    agents = [c for c in _cmdlines().values() if "gpg-agent" in c and str(home) in c]
    crypto.remove_keyring(home)
    assert agents == []


# --- check_key: accepted keys ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["cv25519", "rsa3072"])
def test_good_keys_are_accepted(
    gpg: gnupg.GPG, tmp_path: Path, pairs: dict[str, keys.KeyPair], kind: str
) -> None:
    pair = pairs[kind]
    spaced = " ".join(pair.fingerprint[i : i + 4] for i in range(0, 40, 4)).lower()
    key = crypto.check_key(gpg, pair.public_path, spaced, TODAY)  # registry spelling tolerated
    assert key.fingerprint == pair.fingerprint
    assert key.expires is None
    assert set(key.encryption_subkeys) >= _encryption_subkeys(tmp_path, pair.public_path)
    if kind == "rsa3072":
        assert (key.algorithm, key.bits) == ("RSA", 3072)
    else:
        assert key.algorithm == "EdDSA"


def test_expires_within() -> None:
    soon = crypto.KeyCheck("F" * 40, "EdDSA", 255, TODAY + timedelta(days=20), ("A" * 16,))
    assert soon.expires_within(TODAY, 30)
    assert not soon.expires_within(TODAY, 10)
    assert not crypto.KeyCheck("F" * 40, "EdDSA", 255, None, ("A" * 16,)).expires_within(TODAY, 3650)


# --- check_key: refusals --------------------------------------------------------------------------


def _refusal(gpg: gnupg.GPG, key_file: Path, pinned: str, today: date = TODAY) -> crypto.KeyRefused:
    with pytest.raises(crypto.KeyRefused) as info:
        crypto.check_key(gpg, key_file, pinned, today)
    return info.value


def test_key_missing(gpg: gnupg.GPG, tmp_path: Path) -> None:
    """Catalogue #17: no key, no delivery (never a plaintext fallback)."""
    refused = _refusal(gpg, tmp_path / "44021.asc", "A" * 40)
    assert refused.code == "key_missing"
    assert "44021.asc" in str(refused)


@pytest.mark.parametrize(
    "content", [b"", b"not a key at all\n", b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nAAAA\n"]
)
def test_key_malformed(gpg: gnupg.GPG, tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "44021.asc"
    path.write_bytes(content)
    assert _refusal(gpg, path, "A" * 40).code == "key_malformed"


def test_fingerprint_mismatch(gpg: gnupg.GPG, pairs: dict[str, keys.KeyPair]) -> None:
    """Catalogue #20: the file holds another key than the pinned one (a swapped key)."""
    refused = _refusal(gpg, pairs["cv25519"].public_path, pairs["other"].fingerprint)
    assert refused.code == "fingerprint_mismatch"
    assert pairs["other"].fingerprint in str(refused)


def test_two_keys_in_one_file_are_ambiguous(
    gpg: gnupg.GPG, tmp_path: Path, pairs: dict[str, keys.KeyPair]
) -> None:
    """Catalogue #21: only one key per file, even when the pinned one is among them."""
    both = tmp_path / "both.asc"
    both.write_text(pairs["cv25519"].public_path.read_text() + pairs["other"].public_path.read_text())
    assert _refusal(gpg, both, pairs["cv25519"].fingerprint).code == "key_ambiguous"


@pytest.mark.parametrize(
    ("kind", "code"),
    [
        ("revoked", "key_revoked"),  # catalogue #19
        ("expired", "key_expired"),  # catalogue #18
        ("rsa2048", "key_weak"),
        ("signonly", "key_cannot_encrypt"),
    ],
)
def test_unusable_keys_are_refused_with_stable_codes(
    gpg: gnupg.GPG, pairs: dict[str, keys.KeyPair], kind: str, code: str
) -> None:
    pair = pairs[kind]
    refused = _refusal(gpg, pair.public_path, pair.fingerprint)
    assert refused.code == code
    assert pair.fingerprint in str(refused)


def test_min_bits_is_a_parameter(gpg: gnupg.GPG, pairs: dict[str, keys.KeyPair]) -> None:
    pair = pairs["rsa2048"]
    key = crypto.check_key(gpg, pair.public_path, pair.fingerprint, TODAY, min_bits=2048)
    assert key.bits == 2048


def test_key_that_expires_later_is_expired_on_that_day(
    tmp_path: Path, pairs: dict[str, keys.KeyPair]
) -> None:
    """The expiry is compared with the delivery day, not the wall clock."""
    pair = pairs["expired"]
    home = tmp_path / "ring"
    gpg = crypto.keyring(home)
    gpg.import_keys_file(str(pair.public_path))
    expires = datetime.fromtimestamp(int(gpg.list_keys()[0]["expires"]), UTC).date()
    crypto.remove_keyring(home)
    gpg = crypto.keyring(home)
    assert _refusal(gpg, pair.public_path, pair.fingerprint, today=expires).code == "key_expired"


# --- encrypt_to_key --------------------------------------------------------------------------------


def test_pubkey_round_trip(gpg: gnupg.GPG, tmp_path: Path, pairs: dict[str, keys.KeyPair]) -> None:
    pair = pairs["cv25519"]
    key = crypto.check_key(gpg, pair.public_path, pair.fingerprint, TODAY)
    out = tmp_path / "list.csv.gpg"
    crypto.encrypt_to_key(gpg, PLAINTEXT, key, out)
    data = out.read_bytes()
    assert PLAINTEXT not in data
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert not list(tmp_path.glob("*.tmp"))
    assert keys.decrypt(pair.secret_path, data) == PLAINTEXT
    with pytest.raises(RuntimeError):  # another municipality's key cannot open it
        keys.decrypt(pairs["other"].secret_path, data)


@pytest.mark.parametrize("kind", ["cv25519", "rsa3072"])
def test_file_is_addressed_to_exactly_the_pinned_encryption_subkey(
    gpg: gnupg.GPG, tmp_path: Path, pairs: dict[str, keys.KeyPair], kind: str
) -> None:
    """Catalogue #22: --list-packets shows the pinned key's encryption subkey and nothing else."""
    pair = pairs[kind]
    key = crypto.check_key(gpg, pair.public_path, pair.fingerprint, TODAY)
    out = tmp_path / "list.csv.gpg"
    crypto.encrypt_to_key(gpg, PLAINTEXT, key, out)
    addressed = set(re.findall(r":pubkey enc packet: .*keyid ([0-9A-F]{16})", _packets(tmp_path, out)))
    assert len(addressed) == 1
    assert addressed <= set(key.encryption_subkeys)
    assert addressed <= _encryption_subkeys(tmp_path, pair.public_path) | {pair.fingerprint[-16:]}


def test_encrypt_to_ignores_a_planted_encrypt_to(tmp_path: Path, pairs: dict[str, keys.KeyPair]) -> None:
    """Catalogue #20/#21: a gpg.conf with `encrypt-to` and a second key in the keyring add no recipient."""
    home = tmp_path / "ring"
    gpg = crypto.keyring(home)
    key = crypto.check_key(gpg, pairs["cv25519"].public_path, pairs["cv25519"].fingerprint, TODAY)
    gpg.import_keys_file(str(pairs["other"].public_path))
    (home / "gpg.conf").write_text(f"encrypt-to {pairs['other'].fingerprint}\ntrust-model always\n")
    # The plant works on a plain gpg: the file would go to both keys.
    plain = gnupg.GPG(gnupghome=str(home)).encrypt(PLAINTEXT, key.fingerprint, armor=False)
    (tmp_path / "plain.gpg").write_bytes(plain.data)
    assert len(set(re.findall(r"keyid ([0-9A-F]{16})", _packets(tmp_path, tmp_path / "plain.gpg")))) == 2
    gpg = crypto.keyring(home)
    out = tmp_path / "list.csv.gpg"
    crypto.encrypt_to_key(gpg, PLAINTEXT, key, out)
    addressed = set(re.findall(r":pubkey enc packet: .*keyid ([0-9A-F]{16})", _packets(tmp_path, out)))
    assert len(addressed) == 1 and addressed <= set(key.encryption_subkeys)
    with pytest.raises(RuntimeError):
        keys.decrypt(pairs["other"].secret_path, out.read_bytes())
    crypto.remove_keyring(home)


def test_a_file_for_other_subkeys_is_not_kept(
    gpg: gnupg.GPG, tmp_path: Path, pairs: dict[str, keys.KeyPair]
) -> None:
    """The read-back check: if gpg addressed the file to anything else, it is refused, not written."""
    key = crypto.check_key(gpg, pairs["cv25519"].public_path, pairs["cv25519"].fingerprint, TODAY)
    wrong = crypto.KeyCheck(key.fingerprint, key.algorithm, key.bits, key.expires, ("0123456789ABCDEF",))
    out = tmp_path / "list.csv.gpg"
    with pytest.raises(crypto.EncryptionFailed, match="not only to the pinned key"):
        crypto.encrypt_to_key(gpg, PLAINTEXT, wrong, out)
    assert not out.exists()


def test_gpg_refusing_is_an_error_without_plaintext(
    gpg: gnupg.GPG, tmp_path: Path, pairs: dict[str, keys.KeyPair]
) -> None:
    key = crypto.check_key(gpg, pairs["cv25519"].public_path, pairs["cv25519"].fingerprint, TODAY)
    absent = crypto.KeyCheck(pairs["other"].fingerprint, "EdDSA", 255, None, ("0123456789ABCDEF",))
    out = tmp_path / "list.csv.gpg"
    with pytest.raises(crypto.EncryptionFailed) as info:
        crypto.encrypt_to_key(gpg, PLAINTEXT, absent, out)
    assert "x;ja" not in str(info.value)
    assert not out.exists()
    assert key.fingerprint != absent.fingerprint


# --- encrypt_with_passphrase -----------------------------------------------------------------------


def test_passphrase_round_trip_with_aes256(gpg: gnupg.GPG, tmp_path: Path) -> None:
    passphrase = crypto.new_passphrase()
    out = tmp_path / "list.csv.gpg"
    crypto.encrypt_with_passphrase(gpg, PLAINTEXT, passphrase, out)
    data = out.read_bytes()
    assert keys.decrypt(None, data, passphrase) == PLAINTEXT
    with pytest.raises(RuntimeError):
        keys.decrypt(None, data, crypto.new_passphrase())
    packets = _packets(tmp_path, out)
    assert re.search(r":symkey enc packet: version \d, cipher 9\b", packets)  # 9 = AES-256
    assert ":pubkey enc packet:" not in packets  # no key can open it
    assert "mdc_method: 2" in packets  # integrity protected
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


@pytest.mark.parametrize("bad", ["abc\ndef", "abc\rdef", "abc\0def"])
def test_passphrase_with_line_break_or_nul_is_refused(gpg: gnupg.GPG, tmp_path: Path, bad: str) -> None:
    """Catalogue #23 (CVE-2019-6690): a line break would end the passphrase early on gpg's stdin."""
    out = tmp_path / "list.csv.gpg"
    with pytest.raises(ValueError):
        crypto.encrypt_with_passphrase(gpg, PLAINTEXT, bad, out)
    assert not out.exists()


def _cmdlines() -> dict[int, str]:
    found = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as fh:
                found[int(entry.name)] = fh.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
    return found


def test_passphrase_is_never_on_a_command_line_or_in_the_environment(gpg: gnupg.GPG, tmp_path: Path) -> None:
    """Catalogue #24: while gpg runs, no /proc/*/cmdline or gpg's environ holds the passphrase.

    The encryption runs in a thread on a plaintext big enough to keep gpg busy; the test scans
    /proc meanwhile and also proves that it saw the gpg process (else it would prove nothing).
    """
    passphrase = crypto.new_passphrase()
    plaintext = os.urandom(6 << 20)
    error: list[BaseException] = []

    def encrypt() -> None:
        try:
            crypto.encrypt_with_passphrase(gpg, plaintext, passphrase, tmp_path / "big.gpg")
        except BaseException as exc:  # reported to the main thread
            error.append(exc)

    worker = threading.Thread(target=encrypt)
    worker.start()
    seen_gpg: set[int] = set()
    leaked = False
    deadline = time.monotonic() + 60
    while worker.is_alive() and time.monotonic() < deadline:
        for pid, cmd in _cmdlines().items():
            if passphrase in cmd:
                leaked = True
            if str(gpg.gnupghome) in cmd:
                seen_gpg.add(pid)
                try:
                    with open(f"/proc/{pid}/environ", "rb") as fh:
                        leaked |= passphrase.encode() in fh.read()
                except OSError:
                    pass
    worker.join(timeout=60)
    assert not error, "the encryption failed"
    assert seen_gpg, "the scan never saw gpg running: enlarge the plaintext"
    assert not leaked, "the passphrase was visible in /proc"
    assert keys.decrypt(None, (tmp_path / "big.gpg").read_bytes(), passphrase) == plaintext


# --- new_passphrase --------------------------------------------------------------------------------


def test_new_passphrase_format_and_entropy() -> None:
    """7 groups of 4 from a 31-symbol alphabet: >= 128 bits, phone-friendly, no line breaks."""
    alphabet = crypto.PASSPHRASE_ALPHABET
    assert len(set(alphabet)) == len(alphabet) == 31
    assert not set(alphabet) & set("0o1lI|\r\n\t ")  # no look-alikes, no whitespace
    symbols = crypto.PASSPHRASE_GROUPS * crypto.PASSPHRASE_GROUP_LEN
    assert symbols * math.log2(len(alphabet)) >= 128
    pattern = re.compile(rf"^[{alphabet}]{{4}}(-[{alphabet}]{{4}}){{6}}$")
    drawn = [crypto.new_passphrase() for _ in range(2000)]
    assert all(pattern.fullmatch(p) for p in drawn)
    assert len(set(drawn)) == len(drawn)
    used = set("".join(drawn).replace("-", ""))
    assert used == set(alphabet)  # every symbol occurs: the full alphabet is really used


def test_a_ciphertext_the_disk_cannot_hold_leaves_nothing(gpg: gnupg.GPG, tmp_path: Path) -> None:
    """Catalogue 26: the staging disk fills while the ciphertext is written: a clear, passing
    error (retried), and neither the partial file nor its temporary name stays behind."""
    from tests.openssh.harness import MountNotPermitted, tmpfs_over

    small = tmp_path / "small"
    small.mkdir(mode=0o700)
    incompressible = os.urandom(400_000)  # gpg's compression cannot bring it under 128 KiB
    try:
        with tmpfs_over(small, size="128k", mode=0o700):
            with pytest.raises(crypto.StagingFull, match=r"ran out of space writing list\.csv\.gpg"):
                crypto.encrypt_with_passphrase(
                    gpg, incompressible, crypto.new_passphrase(), small / "list.csv.gpg"
                )
            assert list(small.iterdir()) == []
            # Room again (a small file): the same call writes it whole.
            crypto.encrypt_with_passphrase(gpg, PLAINTEXT, crypto.new_passphrase(), small / "list.csv.gpg")
            assert [p.name for p in small.iterdir()] == ["list.csv.gpg"]
            assert stat.S_IMODE((small / "list.csv.gpg").stat().st_mode) == 0o600
    except MountNotPermitted as exc:
        pytest.skip(str(exc))
