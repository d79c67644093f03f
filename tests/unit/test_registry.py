"""kbi.registry: load and validate the recipients registry; who may receive on a day (P1, P2, P5).

The bad inputs are recorded files under tests/fixtures/registry/ (one problem each, named after
it); every one must be refused as a whole with a message that names the entry and the field.
"""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pytest

from kbi import registry

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "registry"


def _load(tmp_path: Path, fixture: str) -> registry.Registry:
    """Load a recorded registry from a private copy, with the key files it names (except 'missing')."""
    target = tmp_path / "recipients.yaml"
    shutil.copy(FIXTURES / fixture, target)
    (tmp_path / "keys").mkdir(exist_ok=True)
    for nis in ("44021", "11002"):
        (tmp_path / "keys" / f"{nis}.asc").write_text("-----BEGIN PGP PUBLIC KEY BLOCK-----\n")
    return registry.load(target)


def _error(tmp_path: Path, fixture: str) -> str:
    with pytest.raises(registry.RegistryError) as info:
        _load(tmp_path, fixture)
    return str(info.value)


# --- a valid registry -------------------------------------------------------------------------------


def test_valid_registry_loads(tmp_path: Path) -> None:
    reg = _load(tmp_path, "valid.yaml")
    assert sorted(reg.recipients) == ["11002", "21004", "44021"]
    gent = reg.recipients["44021"]
    # P2: fields normalised to the canonical column order whatever the YAML order.
    assert gent.protocol.fields == registry.CANONICAL_FIELDS
    assert reg.recipients["11002"].protocol.fields == registry.TEMPLATE_FIELDS
    # The pinned fingerprint is normalised: no spaces, upper case.
    assert gent.encryption.fingerprint == "0123456789ABCDEF0123456789ABCDEF01234567"
    assert gent.key_path(reg.directory) == tmp_path / "keys" / "44021.asc"
    assert reg.recipients["11002"].key_path(reg.directory) is None
    assert gent.label == "44021 Gent"
    assert reg.version.startswith("sha256:") and len(reg.version) == len("sha256:") + 16
    assert reg.path == tmp_path / "recipients.yaml"


def test_version_follows_content(tmp_path: Path) -> None:
    first = _load(tmp_path, "valid.yaml").version
    path = tmp_path / "recipients.yaml"
    path.write_text(path.read_text() + "\n# a comment changes the version\n")
    assert registry.load(path).version != first


def test_entries_are_frozen(tmp_path: Path) -> None:
    gent = _load(tmp_path, "valid.yaml").recipients["44021"]
    with pytest.raises(ValueError):
        gent.name = "Antwerpen"  # type: ignore[misc]


def test_missing_file_is_a_registry_error(tmp_path: Path) -> None:
    with pytest.raises(registry.RegistryError, match="cannot read the registry"):
        registry.load(tmp_path / "absent.yaml")


# --- recorded bad inputs --------------------------------------------------------------------------

BAD = [
    # fixture, the entry it must name, the field and the reason
    ("invalid_yaml.yaml", None, "not valid YAML"),
    ("not_a_list.yaml", None, "must be a YAML list"),
    ("entry_not_mapping.yaml", "entry 2", "must be a mapping"),
    ("nis_code_format.yaml", "entry 1 (nis_code 4402, Gent)", "nis_code: String should match pattern"),
    ("nis_code_unknown.yaml", "nis_code 44999", "nis_code: not in the 2025 municipality reference list"),
    ("name_mismatch.yaml", "nis_code 11002", "name: the reference list calls 11002 'Antwerpen'"),
    ("field_unknown.yaml", "entry 1 (nis_code 44021, Gent)", "protocol.fields: unknown field(s) ['adres']"),
    ("field_twice.yaml", "entry 1 (nis_code 44021, Gent)", "protocol.fields: a field is listed twice"),
    ("field_number_missing.yaml", "entry 1 (nis_code 44021, Gent)", "protocol.fields: rijksregisternummer"),
    (
        "dates_out_of_order.yaml",
        "entry 1 (nis_code 44021, Gent)",
        "protocol: in_force_from is before signed_on",
    ),
    ("terminated_before_signed.yaml", "entry 1 (nis_code 44021, Gent)", "terminated_on is before signed_on"),
    ("email_invalid.yaml", "entry 1 (nis_code 44021, Gent)", "contacts.email: not an e-mail address"),
    ("sms_not_international.yaml", "entry 1 (nis_code 44021, Gent)", "contacts.sms: not an international"),
    ("sms_missing.yaml", "entry 1 (nis_code 44021, Gent)", "contacts.sms: "),
    (
        "pubkey_without_fingerprint.yaml",
        "entry 1 (nis_code 44021, Gent)",
        "encryption: pubkey mode needs both",
    ),
    ("passphrase_with_key.yaml", "entry 1 (nis_code 44021, Gent)", "encryption: passphrase mode takes no"),
    ("fingerprint_short.yaml", "entry 1 (nis_code 44021, Gent)", "encryption.fingerprint: must be the 40"),
    ("mode_unknown.yaml", "entry 1 (nis_code 44021, Gent)", "encryption.mode: "),
    ("inbox_relative.yaml", "entry 1 (nis_code 44021, Gent)", "sftp.inbox: must be a normalised absolute"),
    ("inbox_dotdot.yaml", "entry 1 (nis_code 44021, Gent)", "sftp.inbox: must be a normalised absolute"),
    ("inbox_without_nis.yaml", "nis_code 44021 (Gent)", "sftp.inbox: must contain the NIS code"),
    ("extra_key.yaml", "entry 1 (nis_code 44021, Gent)", "adres: Extra inputs are not permitted"),
    ("nis_code_twice.yaml", "nis_code 44021 (Gent)", "nis_code: also used by nis_code 44021"),
    ("fingerprint_twice.yaml", "nis_code 11002 (Antwerpen)", "fingerprint: also used by nis_code 44021"),
    ("inbox_twice.yaml", "nis_code 11002 (Antwerpen)", "inbox: also used by nis_code 44021"),
]


def test_a_missing_key_file_is_the_municipalitys_not_the_registrys(tmp_path: Path) -> None:
    """Issue 4, catalogue 17: the registry loads; a run refuses that municipality alone (P6,
    key_missing) and ``missing_key_files`` (for ``kbi registry check``) names the entry."""
    reg = _load(tmp_path, "key_file_missing.yaml")
    assert "44021" in reg.recipients
    assert registry.missing_key_files(reg) == [
        "entry nis_code 44021 (Gent): encryption.key_file: keys/missing.asc does not exist"
    ]
    (tmp_path / "valid").mkdir()
    assert registry.missing_key_files(_load(tmp_path / "valid", "valid.yaml")) == []


@pytest.mark.parametrize(("fixture", "entry", "reason"), BAD, ids=[b[0].removesuffix(".yaml") for b in BAD])
def test_bad_registry_is_refused_naming_entry_and_field(
    tmp_path: Path, fixture: str, entry: str | None, reason: str
) -> None:
    """A structural error anywhere rejects the whole registry (a half-read one could misdirect a list)."""
    message = _error(tmp_path, fixture)
    assert str(tmp_path / "recipients.yaml") in message  # the file is named
    if entry is not None:
        assert entry in message
    assert reason in message


def test_every_recorded_fixture_is_exercised() -> None:
    recorded = {p.name for p in FIXTURES.glob("*.yaml")}
    tested = {b[0] for b in BAD} | {
        "valid.yaml",
        "date_invalid.yaml",
        "duplicate_key.yaml",
        "several_problems.yaml",
        "key_file_missing.yaml",
    }
    assert recorded == tested


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    message = _error(tmp_path, "several_problems.yaml")
    assert "3 problem(s)" in message
    assert "entry 1 (nis_code 44021, Gent): contacts.email" in message
    assert "entry 2 (nis_code 11002, Antwerpen): protocol: in_force_from is before signed_on" in message
    assert "entry 2 (nis_code 11002, Antwerpen): contacts.sms" in message


def test_impossible_date_is_refused_naming_entry_and_field(tmp_path: Path) -> None:
    message = _error(tmp_path, "date_invalid.yaml")
    assert "entry 1" in message and "signed_on" in message


def test_duplicate_key_in_an_entry_is_refused(tmp_path: Path) -> None:
    message = _error(tmp_path, "duplicate_key.yaml")
    assert "fingerprint" in message


# --- eligibility: P1 scope and P5 window ------------------------------------------------------------


def _recipient(
    nis: str = "44021",
    name: str = "Gent",
    in_force_from: date = date(2024, 3, 1),
    terminated_on: date | None = None,
) -> registry.Recipient:
    return registry.Recipient.model_validate(
        {
            "nis_code": nis,
            "name": name,
            "protocol": {
                "signed_on": date(2024, 2, 1),
                "in_force_from": in_force_from,
                "terminated_on": terminated_on,
                "fields": list(registry.TEMPLATE_FIELDS),
            },
            "contacts": {"email": ["privacy@example.gent"], "sms": ["+32470123456"]},
            "encryption": {"mode": "passphrase"},
            "sftp": {"inbox": f"/{nis}/inbox"},
        }
    )


def test_in_force_protocol_is_eligible() -> None:
    verdict = registry.eligibility(_recipient(), date(2026, 1, 15))
    assert verdict.eligible and verdict.rule is None and verdict.reason is None
    assert (verdict.nis_code, verdict.name) == ("44021", "Gent")


def test_brussels_is_never_eligible() -> None:
    """P1: the 19 Brussels municipalities are not under the Flemish decree."""
    verdict = registry.eligibility(_recipient("21004", "Brussel"), date(2026, 1, 15))
    assert not verdict.eligible and verdict.rule == "P1"
    assert verdict.reason and "Brussels" in verdict.reason


def test_not_yet_in_force() -> None:
    """P5: before in_force_from nothing is delivered; from that day on it is."""
    r = _recipient(in_force_from=date(2026, 2, 1))
    before = registry.eligibility(r, date(2026, 1, 31))
    assert not before.eligible and before.rule == "P5" and "not yet in force" in str(before.reason)
    assert registry.eligibility(r, date(2026, 2, 1)).eligible


def test_twelve_months_notice() -> None:
    """P5: notice given on a day ends the protocol 12 months later; deliveries run until then."""
    r = _recipient(terminated_on=date(2025, 3, 15))
    assert registry.protocol_end(r.protocol) == date(2026, 3, 15)
    assert registry.eligibility(r, date(2025, 3, 15)).eligible  # notice given, still in force
    assert registry.eligibility(r, date(2026, 3, 14)).eligible
    ended = registry.eligibility(r, date(2026, 3, 15))
    assert not ended.eligible and ended.rule == "P5"
    assert "2025-03-15" in str(ended.reason) and "2026-03-15" in str(ended.reason)


def test_notice_on_29_february_ends_on_28_february() -> None:
    r = _recipient(terminated_on=date(2024, 2, 29))
    assert registry.protocol_end(r.protocol) == date(2025, 2, 28)


def test_no_notice_no_end() -> None:
    assert registry.protocol_end(_recipient().protocol) is None
    assert registry.eligibility(_recipient(), date(2099, 1, 1)).eligible


# --- the plan's snapshot, read by each deliver task ------------------------------------------------


def test_snapshot_gives_back_the_validated_entry(tmp_path: Path) -> None:
    reg = _load(tmp_path, "valid.yaml")
    snapshot = tmp_path / "run" / "registry.json"
    snapshot.parent.mkdir()
    registry.write_snapshot(reg, snapshot)
    assert snapshot.stat().st_mode & 0o777 == 0o600  # municipal contacts: the run's eyes only
    assert registry.version(reg.path) == reg.version
    for nis, entry in reg.recipients.items():
        assert registry.planned_recipient(snapshot, nis, reg.version) == entry


def test_snapshot_of_another_version_or_municipality_is_refused(tmp_path: Path) -> None:
    reg = _load(tmp_path, "valid.yaml")
    snapshot = tmp_path / "registry.json"
    registry.write_snapshot(reg, snapshot)
    with pytest.raises(registry.RegistryError, match="holds registry"):
        registry.planned_recipient(snapshot, "44021", "sha256:0000000000000000")
    with pytest.raises(registry.RegistryError, match="no entry for nis_code 12345"):
        registry.planned_recipient(snapshot, "12345", reg.version)


def test_version_without_parsing_follows_the_file(tmp_path: Path) -> None:
    reg = _load(tmp_path, "valid.yaml")
    reg.path.write_text(reg.path.read_text() + "\n# changed after the plan\n")
    assert registry.version(reg.path) != reg.version


def test_a_registry_changed_since_the_plan_is_told_apart_by_its_content(tmp_path: Path) -> None:
    reg = _load(tmp_path, "valid.yaml")
    assert registry.changed_since(reg.path, reg.version) is None
    assert registry.changed_since(reg.path, reg.version + " git:0123456789ab") is None  # content decides
    reg.path.write_text(reg.path.read_text() + "\n# changed after the plan\n")
    assert registry.changed_since(reg.path, reg.version) == registry.version(reg.path) != reg.version


def test_a_delivery_refuses_a_registry_changed_since_the_plan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every municipality of a run is decided on one registry: a deliver task that finds the file
    edited since the plan stops before it reads its entry or touches the ledger or a server."""
    from kbi import pipeline, settings

    reg = _load(tmp_path, "valid.yaml")
    monkeypatch.setenv("KBI_REGISTRY", str(reg.path))
    reg.path.write_text(reg.path.read_text().replace("Gent", "Gent (edited)"))
    item = {"nis_code": "44021", "run": {"registry_version": reg.version, "run_dir": str(tmp_path / "run")}}
    with pytest.raises(pipeline.RunRefused, match=r"registry changed during the run \(sha256:"):
        pipeline.deliver(None, None, settings.load(), item)  # type: ignore[arg-type]
