"""docker-compose.yaml checked where no Docker engine runs.

The file is validated against the Compose Specification's JSON schema (tests/fixtures/compose-spec),
before and after interpolation with .env.example, and checked against the repository: build
contexts, Dockerfiles and the files they copy, bind-mounted paths, pinned image tags (the Airflow
image = the apache-airflow pin of requirements.txt), health checks, loopback-only ports, the
variables of .env.example, one Airflow configuration for every component, and the commands the
services and health checks run.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yaml"
SCHEMA = ROOT / "tests" / "fixtures" / "compose-spec" / "compose-spec.json"
ENV_EXAMPLE = ROOT / ".env.example"
AIRFLOW_DIRS = ("dags", "plugins", "include", "config")
Doc = dict[str, Any]

# $$ (a literal dollar), ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error},
# ${NAME:+alt}, ${NAME+alt}, and $NAME: Compose's interpolation forms.
VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)
ENV_LINE = re.compile(r"^(?P<comment>#\s*)?(?P<name>[A-Z][A-Z0-9_]*)=(?P<value>.*)$")


# --- loading ---------------------------------------------------------------------------------


def load(path: Path = COMPOSE) -> dict[str, Any]:
    # safe_load resolves anchors and `<<` merge keys, as Compose does before validating.
    return yaml.safe_load(path.read_text())


def env_example() -> dict[str, tuple[str, bool]]:
    """name -> (value, commented out) for every VAR= line of .env.example."""
    found: dict[str, tuple[str, bool]] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        m = ENV_LINE.match(line.strip())
        if m:
            value = m["value"].strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            found.setdefault(m["name"], (value, bool(m["comment"])))
    return found


def strings(value: Any) -> Iterator[str]:
    """Every string of the loaded file (keys too): what Compose interpolates, comments not."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from strings(k)
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)
    elif isinstance(value, str):
        yield value


def variables(doc: Any) -> list[re.Match[str]]:
    return [m for text in strings(doc) for m in VARIABLE.finditer(text) if not m["escaped"]]


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's interpolation of every string in the file (a missing required value raises)."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(m: re.Match[str]) -> str:
        if m["escaped"]:
            return "$"
        name = m["braced"] or m["bare"]
        op, arg = m["op"], m["arg"] or ""
        is_set, current = name in env, env.get(name, "")
        if op in (":-", "-"):
            return current if (current if op == ":-" else is_set) else arg
        if op in (":?", "?"):
            if not (current if op == ":?" else is_set):
                raise KeyError(f"required variable {name} is missing: {arg}")
            return current
        if op in (":+", "+"):
            return arg if (current if op == ":+" else is_set) else ""
        return current

    return VARIABLE.sub(one, value)


def example_env() -> dict[str, str]:
    """.env.example's values; the secrets it leaves empty get a stand-in, as an operator would."""
    return {
        name: value or f"stand-in-{name.lower()}" for name, (value, off) in env_example().items() if not off
    }


def validation_errors(doc: Any) -> list[str]:
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
    ]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load()


@pytest.fixture(scope="module")
def resolved(compose: dict[str, Any]) -> dict[str, Any]:
    return interpolate(compose, example_env())


def airflow_version() -> str:
    m = re.search(r"^apache-airflow==(\S+)$", (ROOT / "requirements.txt").read_text(), re.MULTILINE)
    assert m, "requirements.txt pins no apache-airflow version"
    return m.group(1)


def airflow_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: svc
        for name, svc in compose["services"].items()
        if svc.get("build", {}).get("dockerfile") == "Dockerfile" and svc["build"]["context"] == "."
    }


def one_shot(svc: dict[str, Any]) -> bool:
    return svc.get("restart") == "no"


def bind_mounts(svc: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(host path, container path, read-only) of every bind mount, short or long syntax."""
    mounts = []
    for v in svc.get("volumes", []):
        if isinstance(v, str):
            parts = v.split(":")
            if parts[0].startswith((".", "/", "~")):
                mounts.append((parts[0], parts[1], len(parts) > 2 and "ro" in parts[2].split(",")))
        elif v.get("type") == "bind":
            mounts.append((v["source"], v["target"], bool(v.get("read_only"))))
    return mounts


def dockerfile_froms(path: Path) -> list[str]:
    """FROM images of a Dockerfile, with ARG defaults declared before the first FROM resolved."""
    args: dict[str, str] = {}
    froms = []
    for line in path.read_text().splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0].upper() == "ARG" and "=" in words[1] and not froms:
            name, default = words[1].split("=", 1)
            args[name] = default
        elif words[0].upper() == "FROM":
            image = words[1] if not words[1].startswith("--platform") else words[2]
            froms.append(re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), image))
    return froms


def image_tag(image: str) -> tuple[str, str]:
    name, _, tag = image.rpartition(":") if ":" in image.rsplit("/", 1)[-1] else (image, "", "")
    return name, tag


# --- the Compose Specification -----------------------------------------------------------------


def test_compose_file_follows_the_compose_specification(compose: Doc, resolved: Doc) -> None:
    assert validation_errors(compose) == []
    assert validation_errors(resolved) == []  # also once every ${VAR} has its .env value


BROKEN = {
    # (replace this, with that) in the text of docker-compose.yaml; the error is reported there
    "misspelt service key": (
        "    image: redis:7.2.5-bookworm\n",
        '    image: redis:7.2.5-bookworm\n    heathcheck:\n      test: ["CMD", "true"]\n',
        "services/redis",
    ),
    "restart no unquoted (YAML reads a boolean)": (
        'restart: "no"',
        "restart: no",
        "services/airflow-init/restart",
    ),
    "ports as a string": (
        '    ports:\n      - "127.0.0.1:${KBI_SFTP_PORT:-2222}:22"',
        '    ports: "127.0.0.1:2222:22"',
        "services/sftp/ports",
    ),
    "unknown depends_on condition": (
        "      airflow-apiserver:\n        condition: service_healthy",
        "      airflow-apiserver:\n        condition: service_ready",
        "services/airflow-worker/depends_on",
    ),
    "misspelt top-level key": ("\nvolumes:\n  postgres-data:", "\nvolume:\n  postgres-data:", "<root>"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_copy_is_rejected(case: str, tmp_path: Path) -> None:
    old, new, where = BROKEN[case]
    text = COMPOSE.read_text()
    assert text.count(old) == 1, f"the test's anchor text is not unique in docker-compose.yaml: {old!r}"
    broken = tmp_path / "docker-compose.yaml"
    broken.write_text(text.replace(old, new))
    errors = validation_errors(load(broken))
    assert errors, f"{case}: the schema accepted a broken file"
    assert any(e.startswith(f"{where}:") for e in errors), errors


def test_a_service_without_a_healthcheck_or_with_an_open_port_is_caught(compose: Doc) -> None:
    """The repository checks below fail on a file the schema accepts but this project does not."""
    broken = copy.deepcopy(compose)
    del broken["services"]["redis"]["healthcheck"]
    broken["services"]["redis"]["ports"] = ["6379:6379"]
    assert validation_errors(broken) == []
    assert missing_healthchecks(broken) == ["redis"]
    assert open_ports(interpolate(broken, example_env())) == ["redis: 6379:6379"]


# --- the repository ------------------------------------------------------------------------------


def test_build_contexts_dockerfiles_and_copied_files_exist(compose: Doc) -> None:
    built = [svc["build"] for svc in compose["services"].values() if "build" in svc]
    assert len(built) >= 2  # the Airflow image and the transfer server
    for build in built:
        context = ROOT / build["context"]
        dockerfile = context / build.get("dockerfile", "Dockerfile")
        assert context.is_dir(), f"build context {context} does not exist"
        assert dockerfile.is_file(), f"{dockerfile} does not exist"
        for line in dockerfile.read_text().splitlines():
            words = line.split()
            if words and words[0].upper() in ("COPY", "ADD"):
                sources = [w for w in words[1:-1] if not w.startswith("--")]
                for src in sources:
                    assert (context / src).exists(), f"{dockerfile.name}: {src} is not in {context}"


def test_bind_mounts_exist_and_named_volumes_are_declared(compose: Doc) -> None:
    declared = set(compose.get("volumes", {}))
    for name, svc in compose["services"].items():
        for v in svc.get("volumes", []):
            source = v.split(":")[0] if isinstance(v, str) else v.get("source", "")
            if isinstance(v, str) and not source.startswith((".", "/", "~")):
                assert source in declared, f"{name}: volume {source} is not declared"
        for host, _, _ in bind_mounts(svc):
            assert not host.startswith(("/", "~")), f"{name}: {host} is outside the repository"
            assert (ROOT / host).exists(), f"{name}: bind-mounted {host} does not exist"
    for name, svc in airflow_services(compose).items():
        mounts = {container: (host, ro) for host, container, ro in bind_mounts(svc)}
        for d in AIRFLOW_DIRS:
            assert mounts.get(f"/opt/airflow/{d}") == (f"./{d}", True), f"{name}: {d}/ not mounted read-only"


def test_images_are_pinned_and_airflow_is_the_version_of_requirements(compose: Doc) -> None:
    version = airflow_version()
    for name, svc in compose["services"].items():
        image = svc.get("image")
        assert image, f"{name}: no image (name the built image too, with a pinned tag)"
        assert "$" not in image, f"{name}: the image must not come from a variable"
        _, tag = image_tag(image)
        assert tag and tag != "latest", f"{name}: image {image} is not pinned to a tag"
    for name in airflow_services(compose):
        assert image_tag(compose["services"][name]["image"])[1] == version, name
    froms = dockerfile_froms(ROOT / "Dockerfile")
    assert froms == [f"apache/airflow:{version}-python3.11"]
    for build in (svc["build"] for svc in compose["services"].values() if "build" in svc):
        for image in dockerfile_froms(ROOT / build["context"] / build.get("dockerfile", "Dockerfile")):
            tag = image_tag(image)[1]
            assert tag and tag != "latest" and "$" not in tag, f"FROM {image} is not pinned"


def missing_healthchecks(compose: dict[str, Any]) -> list[str]:
    missing = []
    for name, svc in compose["services"].items():
        check = svc.get("healthcheck")
        if one_shot(svc):
            continue
        if not check or check.get("disable") or check.get("test") in (["NONE"], "NONE", None):
            missing.append(name)
    return missing


def test_every_long_running_service_has_a_healthcheck(compose: Doc) -> None:
    assert missing_healthchecks(compose) == []
    # The one-shot services (restart "no") are awaited until they completed, by every Airflow service.
    for name in (n for n, svc in compose["services"].items() if one_shot(svc)):
        waiting = [
            other
            for other, svc in airflow_services(compose).items()
            if svc.get("depends_on", {}).get(name, {}).get("condition") == "service_completed_successfully"
        ]
        assert sorted(waiting) == sorted(n for n in airflow_services(compose) if n != name), name


def open_ports(compose: dict[str, Any]) -> list[str]:
    bad = []
    for name, svc in compose["services"].items():
        for p in svc.get("ports", []):
            if isinstance(p, dict):
                ok = p.get("host_ip") == "127.0.0.1"
            else:
                ok = str(p).startswith("127.0.0.1:") and str(p).count(":") == 2
            if not ok:
                bad.append(f"{name}: {p}")
    return bad


def test_published_ports_bind_loopback_and_workers_scale(compose: Doc, resolved: Doc) -> None:
    assert open_ports(resolved) == []
    published = {name for name, svc in resolved["services"].items() if svc.get("ports")}
    assert published == {"airflow-apiserver", "sftp", "mailpit"}
    worker = compose["services"]["airflow-worker"]
    assert worker["command"] == "celery worker"
    # `--scale airflow-worker=N` needs neither a fixed name nor a fixed host port.
    assert "container_name" not in worker and "ports" not in worker


def test_every_variable_is_in_env_example_and_env_is_ignored(compose: Doc) -> None:
    listed = env_example()
    used = variables(compose)
    assert used, "no variables found: the pattern is broken"
    for m in used:
        name = m["braced"] or m["bare"]
        assert name in listed, f"${{{name}}} is used in docker-compose.yaml but not in .env.example"
        assert m["bare"] is None, f"${name}: use ${{{name}}} (with a default or :? where needed)"
        # A brace or dollar in a default or message would end or nest the expression early.
        assert not re.search(r"[{}$]", m["arg"] or ""), f"{name}: default/message {m['arg']!r}"
        if m["op"] in (":?", "?"):
            assert not listed[name][1], f"{name} is required but commented out in .env.example"
    secrets = ("PASSWORD", "SECRET", "FERNET_KEY", "CHAIN")
    for name, (value, _) in listed.items():
        if any(s in name for s in secrets):
            assert value == "", f".env.example must not carry a value for the secret {name}"
    # Every secret reaches the containers through a required variable, never a default.
    for m in used:
        name = m["braced"]
        if any(s in name for s in secrets):
            assert m["op"] in (":?", None), f"{name} must be required (:?), not defaulted"
    # .env is never committed; .env.example is.
    assert subprocess.run(["git", "check-ignore", "-q", "--no-index", ".env"], cwd=ROOT).returncode == 0
    assert (
        subprocess.run(["git", "check-ignore", "-q", "--no-index", ".env.example"], cwd=ROOT).returncode == 1
    )


def test_airflow_components_share_one_configuration(compose: Doc, resolved: Doc) -> None:
    services = airflow_services(resolved)
    assert {svc.get("command") for svc in services.values()} >= {
        "api-server",
        "scheduler",
        "dag-processor",
        "triggerer",
        "celery worker",
    }
    shared = (
        "AIRFLOW__CORE__EXECUTOR",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
        "AIRFLOW__CELERY__BROKER_URL",
        "AIRFLOW__CELERY__RESULT_BACKEND",
        "AIRFLOW__CORE__FERNET_KEY",
        "AIRFLOW__API_AUTH__JWT_SECRET",
        "AIRFLOW__API__SECRET_KEY",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE",
    )
    envs = {name: svc["environment"] for name, svc in services.items()}
    for key in shared:
        values = {name: env.get(key) for name, env in envs.items()}
        assert len(set(values.values())) == 1 and None not in values.values(), f"{key} differs: {values}"
    env = next(iter(envs.values()))
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    # The workers reach the execution API at the api-server service, on its container port.
    m = re.fullmatch(r"http://([\w-]+):(\d+)/execution/", env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
    assert m and resolved["services"][m.group(1)]["command"] == "api-server"
    assert any(str(p).endswith(f":{m.group(2)}") for p in resolved["services"][m.group(1)]["ports"])
    # The scheduler's health check needs its health server.
    assert env["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"] == "true"
    broker = env["AIRFLOW__CELERY__BROKER_URL"]
    assert broker.split("//")[1].split(":")[0] in resolved["services"]
    for key in ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CELERY__RESULT_BACKEND"):
        assert "@postgres:5432/airflow" in env[key]
    # The password file lives on a volume that airflow-init writes and the api-server reads.
    auth_dir = os.path.dirname(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
    for name, svc in services.items():
        assert any(isinstance(v, str) and v.endswith(f":{auth_dir}") for v in svc["volumes"]), name


def test_ledger_and_quarantine_databases_and_roles_come_from_the_postgres_init(resolved: Doc) -> None:
    init = ROOT / "deploy" / "postgres" / "init"
    sql = " ".join(p.read_text() for p in sorted(init.iterdir()) if p.is_file())
    env = next(iter(airflow_services(resolved).values()))["environment"]
    for key in ("AIRFLOW_CONN_KBI_LEDGER", "AIRFLOW_CONN_KBI_QUARANTINE"):
        conn = json.loads(env[key])
        assert conn["host"] == "postgres" and conn["conn_type"] == "postgres"
        assert f"CREATE DATABASE {conn['schema']};" in sql, f"{conn['schema']} is not created"
        assert f"CREATE ROLE {conn['login']} LOGIN" in sql, f"role {conn['login']} is not created"
        assert f"OWNER TO {conn['login']};" in sql
    assert json.loads(env["AIRFLOW_CONN_KBI_LEDGER"])["extra"]["chain_secret"]
    pg_env = resolved["services"]["postgres"]["environment"]
    for var in re.findall(r"\$\{?(KBI_\w+_PASSWORD)", sql):
        assert pg_env.get(var), f"the postgres service does not pass {var} to its init scripts"
    for script in init.glob("*.sh"):
        assert os.access(script, os.X_OK), f"{script.name} must be executable (else it is sourced)"


def test_dags_do_not_assume_the_compose_layout() -> None:
    for path in [*(ROOT / "dags").rglob("*.py"), *(ROOT / "plugins").rglob("*.py")]:
        text = path.read_text()
        for container_path in ("/opt/airflow", "/opt/kbi", "airflow-apiserver", "@postgres"):
            assert container_path not in text, f"{path.relative_to(ROOT)} names {container_path}"


# --- what the services run -------------------------------------------------------------------------


def _airflow_argvs(compose: dict[str, Any]) -> list[list[str]]:
    """Every `airflow ...` the Airflow services run: their commands and their health checks."""
    argvs: list[list[str]] = []
    for svc in airflow_services(compose).values():
        if isinstance(svc.get("command"), str):
            argvs.append(shlex.split(svc["command"]))
        test = svc.get("healthcheck", {}).get("test", [])
        if test[:1] == ["CMD-SHELL"]:
            for part in test[1].split("||"):
                words = shlex.split(part.replace("$${HOSTNAME}", "host"))
                if words[:1] == ["airflow"]:
                    argvs.append(words[1:])
    return argvs


def test_airflow_commands_and_celery_app_exist(compose: Doc) -> None:
    argvs = _airflow_argvs(compose)
    assert ["celery", "worker"] in argvs and ["jobs", "check", "--job-type", "TriggererJob"] in [
        a[:4] for a in argvs
    ]
    apps = sorted(
        {
            m.group(1)
            for svc in compose["services"].values()
            for m in re.finditer(r"celery --app (\S+)", json.dumps(svc.get("healthcheck", {})))
        }
    )
    assert apps
    # Airflow's own parser, in a process configured like the containers (Celery's commands are
    # only registered with the CeleryExecutor).
    probe = (
        "import importlib, json, sys\n"
        "from airflow.cli import cli_parser\n"
        "parser = cli_parser.get_parser()\n"
        "bad = []\n"
        "for argv in json.loads(sys.argv[1]):\n"
        "    try:\n"
        "        parser.parse_args(argv)\n"
        "    except SystemExit:\n"
        "        bad.append(argv)\n"
        "for path in json.loads(sys.argv[2]):\n"
        "    module, _, attr = path.rpartition('.')\n"
        "    try:\n"
        "        if not hasattr(importlib.import_module(module), attr):\n"
        "            bad.append(path)\n"
        "    except ImportError:\n"
        "        bad.append(path)\n"
        "print(json.dumps(bad))\n"
    )
    env = {**os.environ, "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor"}
    out = subprocess.run(
        [sys.executable, "-c", probe, json.dumps(argvs), json.dumps(apps)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    unknown = json.loads(out.stdout.strip().splitlines()[-1])
    assert unknown == [], f"not known to Airflow 3.3 / importable: {unknown}"


def test_entry_point_scripts_exist_and_parse(compose: Doc) -> None:
    scripts = [ROOT / "deploy" / "compose" / "sftp-entrypoint.sh"]
    for name, svc in compose["services"].items():
        entry = svc.get("entrypoint") or []
        mounts = {container: host for host, container, _ in bind_mounts(svc)}
        for word in entry if isinstance(entry, list) else shlex.split(entry):
            if word in mounts:
                scripts.append(ROOT / mounts[word])
            elif word.startswith("/opt/"):
                pytest.fail(f"{name}: entrypoint {word} is neither in the image nor mounted")
    scripts += sorted((ROOT / "deploy" / "postgres" / "init").glob("*.sh"))
    assert len(scripts) >= 3
    for script in scripts:
        assert script.is_file() and os.access(script, os.X_OK), f"{script} missing or not executable"
        subprocess.run(["bash", "-n", str(script)], check=True)
        if shutil.which("shellcheck"):
            check = subprocess.run(["shellcheck", str(script)], capture_output=True, text=True)
            assert check.returncode == 0, check.stdout


# --- the transfer server's container, without Docker --------------------------------------------

# Runs inside private mount and network namespaces: the image's files placed as its Dockerfile
# places them (on a copy of /etc and tmpfs mounts, so the host is untouched), the entry point
# started as the container would start it, then the compose health check and real SFTP clients.
SFTP_DRIVER = r"""
set -euo pipefail
work=$1 healthcheck=$2
shift 2
mount --make-rprivate /
ip link set lo up
cp -a /etc "$work/etc"
mount --bind "$work/etc" /etc
for dir in /srv /run /var/log /usr/local/sbin; do mount -t tmpfs -o mode=0755 tmpfs "$dir"; done
rm -f /etc/ssh/ssh_host_*
install -d -m 0755 /srv/sftp /run/sshd
while (($#)); do install -D -m "$3" "$1" "$2"; shift 3; done
# ./config mounted as /etc/kbi: two municipalities, one with its SSH key
install -d -m 0755 /etc/kbi/sftp-keys
printf -- "- nis_code: '44021'\n  name: Gent\n- nis_code: \"11002\"\n  name: Antwerpen\n" \
  >/etc/kbi/recipients.yaml
ssh-keygen -q -t ed25519 -N '' -C agii -f "$work/agii"
ssh-keygen -q -t ed25519 -N '' -C m44021 -f "$work/m44021"
install -m 0644 "$work/m44021.pub" /etc/kbi/sftp-keys/m44021.pub
export KBI_SFTP_AGENCY_PUBKEY
KBI_SFTP_AGENCY_PUBKEY=$(cat "$work/agii.pub")
start() {
  /usr/local/sbin/sftp-entrypoint >"$work/$1.log" 2>&1 &
  for _ in $(seq 100); do bash -c "$healthcheck" && return 0; sleep 0.1; done
  cat "$work/$1.log"
  return 1
}
start first && echo "HEALTHY"
pin=$(cut -d' ' -f1,2 /etc/ssh/ssh_host_ed25519_key.pub)
echo "127.0.0.1 $pin" >"$work/known"
opts=(-o UserKnownHostsFile="$work/known" -o StrictHostKeyChecking=yes -o BatchMode=yes)
echo "ciphertext" >"$work/upload"
printf 'put %s /.staging/f.part\nrename /.staging/f.part /44021/inbox/f.csv.gpg\n' "$work/upload" |
  sftp "${opts[@]}" -i "$work/agii" -b - agii@127.0.0.1 >/dev/null && echo "UPLOADED"
as_m44021=(sftp "${opts[@]}" -i "$work/m44021" -b - m44021@127.0.0.1)
printf 'ls -1 /\n' | "${as_m44021[@]}" | grep -v '^sftp>' | sed 's/^/LISTED /'
printf 'get /inbox/f.csv.gpg %s/got\n' "$work" | "${as_m44021[@]}" >/dev/null && cat "$work/got"
printf 'ls\n' | sftp "${opts[@]}" -i "$work/m44021" -b - m11002@127.0.0.1 >/dev/null 2>&1 ||
  echo "M11002 REFUSED"
kill "$(cat /run/sshd.pid)"
sleep 0.3
start second && echo "HEALTHY AGAIN"
kill "$(cat /run/sshd.pid)"
grep -h -e 'host key to pin' -e 'setup-sftp-accounts:' "$work/first.log" "$work/second.log"
"""


def _sftp_stand_in_skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (namespaces, accounts)"
    for tool in ("unshare", "ip", "sshd", "sftp", "ssh-keyscan", "ssh-keygen", "useradd"):
        if not (shutil.which(tool) or Path(f"/usr/sbin/{tool}").exists()):
            return f"{tool} is missing"
    return None


@pytest.mark.openssh
def test_the_compose_transfer_server_starts_healthy_and_isolates(compose: Doc, tmp_path: Path) -> None:
    if reason := _sftp_stand_in_skip_reason():
        pytest.skip(reason)
    svc = compose["services"]["sftp"]
    context = ROOT / svc["build"]["context"]
    placed: list[str] = []
    for line in (context / svc["build"]["dockerfile"]).read_text().splitlines():
        words = line.split()
        if words[:1] == ["COPY"]:
            mode = next((w.split("=")[1] for w in words if w.startswith("--chmod=")), "0644")
            src, dest = words[-2], words[-1]
            assert dest.startswith(("/etc/ssh/", "/usr/local/sbin/")), dest  # where the driver can put it
            placed += [str(context / src), dest, mode]
    entry = svc.get("entrypoint")
    assert entry is None  # the image's ENTRYPOINT, placed above
    healthcheck = svc["healthcheck"]["test"][1]
    driver = tmp_path / "driver.sh"
    driver.write_text(SFTP_DRIVER)
    # its own PID namespace too: whatever the driver leaves running dies with it
    unshare = ["unshare", "--mount", "--net", "--pid", "--fork", "--kill-child"]
    proc = subprocess.run(
        [*unshare, "bash", str(driver), str(tmp_path), healthcheck, *placed],
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "HEALTHY" in out and "HEALTHY AGAIN" in out
    assert "UPLOADED" in out  # the agency, through its staging directory, into an inbox
    # the municipality sees its inbox only, and the file in it
    assert [line.split()[1] for line in out.splitlines() if line.startswith("LISTED ")] == ["/inbox"]
    assert "ciphertext" in out
    assert "M11002 REFUSED" in out  # an account without a key gets nothing
    pins = re.findall(r"host key to pin.*: (ssh-ed25519 \S+)", out)
    assert len(pins) == 2 and pins[0] == pins[1]  # the host key survives a restart (the volume)
    assert "setup-sftp-accounts: nothing to change" in out  # the second start changes nothing
