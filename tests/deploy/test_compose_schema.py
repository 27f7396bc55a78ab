"""docker-compose.yml against the Compose specification schema, its structure, the
Dockerfile, and ``charter secrets init`` (what the compose stack starts from)."""

from __future__ import annotations

import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from dotenv import dotenv_values

from charter.config import KNOWN_DEV_SECRETS, PORTS
from charterctl import cli
from services.gateway.settings import GatewayConfig, GatewaySettings
from services.gateway.upstreams import Upstreams
from tests.deploy import compose_support as cs
from tests.support.databases import skip_or_fail

SCHEMA_CHECK = [sys.executable, "-m", "check_jsonschema", "--builtin-schema",
                "vendor.compose-spec"]


def check_schema(path: Path) -> subprocess.CompletedProcess[str]:
    """check-jsonschema's vendored Compose specification schema (no network)."""
    return subprocess.run([*SCHEMA_CHECK, str(path)], capture_output=True, text=True,
                          timeout=120)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return cs.load_compose()


@pytest.fixture(scope="module")
def svcs(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return cs.services(compose)


def test_compose_files_validate_against_the_compose_specification() -> None:
    for path in (cs.COMPOSE_FILE, cs.ROOT / "deploy" / "compose.ops.yml"):
        done = check_schema(path)
        assert done.returncode == 0, done.stdout + done.stderr


def test_the_schema_check_rejects_a_broken_compose_file(tmp_path: Path) -> None:
    broken = tmp_path / "docker-compose.yml"
    text = cs.COMPOSE_FILE.read_text()
    broken.write_text(text.replace("    healthcheck:\n", "    healthchek:\n", 1))
    done = check_schema(broken)
    assert done.returncode != 0
    assert "healthchek" in done.stdout


def test_every_platform_component_and_backing_service_is_in_compose(
        svcs: dict[str, dict[str, Any]]) -> None:
    expected = {*PORTS, *cs.JOBS, *cs.LOCAL_SERVERS, *cs.OBSERVABILITY}
    assert expected <= set(svcs)
    assert set(cs.APP_SERVICES) == set(PORTS)


def test_charter_services_use_the_image_the_env_file_and_production_mode(
        svcs: dict[str, dict[str, Any]]) -> None:
    for name in (*cs.APP_SERVICES, *cs.JOBS):
        service = svcs[name]
        assert service["build"]["context"] == ".", name
        assert service["image"] == svcs["auth"]["image"], name
        assert service["env_file"] == [cs.ENV_FILE], name
        env = cs.service_environment(service)
        assert env["CHARTER_ENV"] == "production", name
        assert env["CHARTER_WORKERS"] == "1", name
        assert "no-new-privileges:true" in service["security_opt"], name
        assert service["cap_drop"] == ["ALL"], name
    for name in cs.APP_SERVICES:
        service = svcs[name]
        assert cs.as_list(service["command"]) == ["serve", name]
        assert cs.service_environment(service)["CHARTER_SERVICE"] == name
        assert "pki:/run/charter/pki:ro" in service["volumes"], name


def test_no_fixed_names_or_host_ports_on_scalable_services(
        svcs: dict[str, dict[str, Any]]) -> None:
    for name, service in svcs.items():
        assert "container_name" not in service, name
    published = {name for name, service in svcs.items() if service.get("ports")}
    assert published == {"gateway"}
    assert svcs["gateway"]["ports"] == [f"{PORTS['gateway']}:{PORTS['gateway']}"]


def test_gateway_discovers_scaled_services_by_dns(
        svcs: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    """``--scale catalog=3``: the gateway resolves every service name to all its
    addresses (docs/gateway.md, *Load balancing and failover*)."""
    env = cs.service_environment(svcs["gateway"])
    assert env["GATEWAY_DISCOVERY"] == "dns"
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    cfg = GatewayConfig.parse()
    assert cfg.gateway_discovery == "dns"
    apps = [a for a in PORTS if a not in ("auth", "gateway")]
    ups = Upstreams(apps, GatewaySettings.from_env(cfg))
    for app in apps:
        assert ups.dns[app], app
        assert ups.instance_urls[app] == (env[f"{app.upper()}_URL"],), app
    for app in (*apps, "auth"):
        assert not svcs[app].get("ports") and "container_name" not in svcs[app], app


def test_healthchecks_everywhere_and_dependencies_wait_for_them(
        svcs: dict[str, dict[str, Any]]) -> None:
    no_probe = {"loki"}  # distroless image: no command to probe with (docs/deployment.md)
    for name, service in svcs.items():
        check = service.get("healthcheck")
        if name in cs.JOBS:
            assert check == {"disable": True}, name
            assert service["restart"] == "no", name
        elif name in no_probe:
            assert check is None, name
        else:
            assert check is not None, f"{name} has no healthcheck"
            assert cs.as_list(check["test"])[0] in ("CMD", "CMD-SHELL"), name
        for dep, condition in cs.depends_on(service).items():
            assert dep in svcs, f"{name} depends on unknown {dep}"
            if dep in cs.JOBS:
                assert condition == "service_completed_successfully", (name, dep)
            elif dep in no_probe:
                assert condition == "service_started", (name, dep)
            else:
                assert condition == "service_healthy", (name, dep)
    for name in cs.APP_SERVICES:
        test = cs.as_list(svcs[name]["healthcheck"]["test"])
        assert test == ["CMD", "charter", "health", name, "--ready"]
        needs = cs.depends_on(svcs[name])
        assert {"pki", "migrate", "topology", "redis", "rabbitmq"} <= set(needs), name
        if name != "auth":
            assert needs["auth"] == "service_healthy", name
    assert cs.depends_on(svcs["exchange"])["rates"] == "service_completed_successfully"
    gateway_needs = cs.depends_on(svcs["gateway"])
    assert set(PORTS) - {"gateway"} <= set(gateway_needs)


def test_service_urls_name_compose_services_on_their_ports(
        svcs: dict[str, dict[str, Any]]) -> None:
    env = cs.service_environment(svcs["catalog"])
    for name, port in PORTS.items():
        scheme = "http" if name in ("auth", "gateway") else "https"
        assert env[f"{name.upper()}_URL"] == f"{scheme}://{name}:{port}"
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4318"


def test_bind_mounted_configuration_exists(svcs: dict[str, dict[str, Any]]) -> None:
    for name, service in svcs.items():
        for source in cs.volume_targets(service).values():
            if source.startswith("./"):
                assert (cs.ROOT / source).exists(), f"{name}: {source} is missing"
    for env_file in {f for s in svcs.values() for f in s.get("env_file", [])}:
        assert env_file == cs.ENV_FILE


def test_logs_go_to_loki_with_correlation_and_trace_ids() -> None:
    loki = yaml.safe_load((cs.ROOT / "deploy" / "loki" / "loki.yaml").read_text())
    assert loki["limits_config"]["allow_structured_metadata"] is True
    assert loki["schema_config"]["configs"][-1]["schema"] == "v13"
    alloy = (cs.ROOT / "deploy" / "alloy" / "config.alloy").read_text()
    assert 'values = ["com.docker.compose.project=charter"]' in alloy
    assert re.search(r"stage\.json\s*\{[^}]*correlation_id\s*=\s*\"correlation_id\"", alloy)
    meta = re.search(r"stage\.structured_metadata\s*\{\s*values\s*=\s*\{([^}]*)\}", alloy)
    assert meta and "correlation_id" in meta.group(1) and "trace_id" in meta.group(1)
    assert 'url = "http://loki:3100/loki/api/v1/push"' in alloy


def test_dockerfile_is_multi_stage_pinned_non_root_with_a_healthcheck() -> None:
    text = cs.DOCKERFILE.read_text()
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.MULTILINE)
    assert base and re.fullmatch(r"python:3\.\d+\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?",
                                 base.group(1))
    stages = re.findall(r"^FROM \S+ AS (\w+)$", text, re.MULTILINE)
    assert stages == ["builder", "runtime"]
    runtime = text.split("AS runtime", 1)[1]
    user = re.findall(r"^USER (\S+)$", runtime, re.MULTILINE)
    assert user and user[-1].split(":")[0] not in ("0", "root")
    assert re.search(r"^HEALTHCHECK .*\n\s+CMD \[\"charter\", \"health\"\]", runtime,
                     re.MULTILINE)
    assert "COPY --from=builder /opt/venv /opt/venv" in runtime
    assert cs.dockerfile_entrypoint() == ["charter"]
    ignored = (cs.ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in ignored  # only what the Dockerfile copies is sent
    copied = set(re.findall(r"^COPY (\w+) \./\1$", text, re.MULTILINE))
    assert {f"!{d}/" for d in copied} <= set(ignored)
    # every top-level directory the running code reads through config.ROOT is in the image
    read: set[str] = set()
    for package in ("charter", "auth", "services"):
        for source in (cs.ROOT / package).rglob("*.py"):
            read |= set(re.findall(r'ROOT / "(\w+)"', source.read_text()))
    assert read - {"var"} <= copied, sorted(read - {"var"} - copied)


def test_secrets_init_writes_a_private_env_file_once(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "deploy" / "compose.env"
    args = ["secrets", "init", "--env-file", str(path)]
    assert cli.main(args) == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    values = {k: v or "" for k, v in dotenv_values(path).items()}
    secrets = {k: v for k, v in values.items()
               if k.endswith(("_PASSWORD", "_SECRET", "_PASS"))}
    for name in ("AUTH_SESSION_SECRET", "CART_CLIENT_SECRET", "ORDERS_CLIENT_SECRET",
                 "POSTGRES_PASSWORD", "RABBITMQ_DEFAULT_PASS", "REDIS_PASSWORD",
                 "GF_SECURITY_ADMIN_PASSWORD", *(f"{c.upper()}_DB_PASSWORD"
                                                 for c in PORTS if c != "gateway")):
        assert len(secrets[name]) >= 40, name
    assert len(set(secrets.values())) == len(secrets)  # every secret its own
    assert not set(values.values()) & KNOWN_DEV_SECRETS
    assert values["ALERTMANAGER_SLACK_WEBHOOK_URL"] == ""
    assert values["CATALOG_DATABASE_URL"] == (
        "postgresql+psycopg://charter_catalog:"
        f"{values['CATALOG_DB_PASSWORD']}@postgres:5432/charter_catalog")
    assert values["AMQP_URL"].startswith(f"amqp://charter:{values['RABBITMQ_DEFAULT_PASS']}@")
    assert values["AUTH_ISSUER"].startswith("https://")
    assert values["CHARTER_PUBLIC_URL"].startswith("https://")
    before = path.read_text()
    capsys.readouterr()
    assert cli.main(args) == 1  # never overwritten by accident
    assert "--force" in capsys.readouterr().err
    assert path.read_text() == before
    assert cli.main([*args, "--force"]) == 0
    assert path.read_text() != before
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert cli.main([*args, "--force", "--issuer", "http://auth:8090"]) == 2  # https only


def test_the_generated_env_file_is_git_ignored() -> None:
    done = subprocess.run(["git", "check-ignore", "-q", cs.ENV_FILE], cwd=cs.ROOT,
                          capture_output=True, timeout=30)
    if done.returncode == 128:
        skip_or_fail("not a git checkout (git check-ignore needs one)")
    assert done.returncode == 0, f"{cs.ENV_FILE} is not git-ignored"
