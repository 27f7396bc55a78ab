"""Reading docker-compose.yml and the Dockerfile, and turning a compose service into a
local process: its command (the image's ENTRYPOINT + the service's command) and its
environment (the Dockerfile's ENV, the env file, the service's ``environment``) with
compose host names mapped to 127.0.0.1, compose ports to free local ports and container
paths (volumes, the image's var dir) to directories under the test's tmp dir.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_FILE = "deploy/compose.env"  # what the compose file names; the tests write their own
VENV_BIN = Path(sys.executable).parent

# The Charter processes compose runs for good, and its one-shot jobs.
APP_SERVICES = ("auth", "catalog", "cart", "orders", "payments", "exchange", "loyalty",
                "notifications", "gateway")
JOBS = ("pki", "migrate", "rates", "topology")
# Servers the run test finds on this machine instead of in containers.
LOCAL_SERVERS = ("postgres", "rabbitmq", "redis",
                 "catalog-db-replica")  # not started here: catalog reads fall back to the primary
# Third-party images the run test does not start (no engine here); the schema and the
# structure tests cover them.
OBSERVABILITY = ("prometheus", "node-exporter", "alertmanager", "grafana", "jaeger", "loki",
                 "alloy")


def load_compose(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    """The compose file with its YAML anchors and merge keys resolved."""
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


def services(compose: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``services:`` of a compose document."""
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def dockerfile_entrypoint(path: Path = DOCKERFILE) -> list[str]:
    """The image's ``ENTRYPOINT`` (exec form)."""
    lines = [line for line in path.read_text().splitlines() if line.startswith("ENTRYPOINT ")]
    assert len(lines) == 1, "the Dockerfile needs exactly one ENTRYPOINT"
    entry: list[str] = json.loads(lines[0][len("ENTRYPOINT "):])
    return entry


def dockerfile_env(path: Path = DOCKERFILE) -> dict[str, str]:
    """The runtime stage's ``ENV`` (the last stage's), without ``PATH``."""
    text = path.read_text().replace("\\\n", " ")
    runtime = text.rsplit("\nFROM ", 1)[-1]
    env: dict[str, str] = {}
    for line in runtime.splitlines():
        if line.startswith("ENV "):
            for token in shlex.split(line[4:]):
                key, _, value = token.partition("=")
                if key != "PATH":
                    env[key] = value
    return env


def as_list(value: Any) -> list[str]:
    """A compose ``command``/``entrypoint``/healthcheck ``test`` as an argv list."""
    if value is None:
        return []
    if isinstance(value, str):
        return shlex.split(value)
    return [str(v) for v in value]


def service_environment(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's ``environment`` (mapping or ``KEY=value`` list) as strings."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        return dict(item.split("=", 1) for item in raw)
    return {str(k): "" if v is None else str(v) for k, v in raw.items()}


def depends_on(service: Mapping[str, Any]) -> dict[str, str]:
    """``depends_on`` as ``{name: condition}`` (the short list form means service_started)."""
    raw = service.get("depends_on") or {}
    if isinstance(raw, list):
        return dict.fromkeys(raw, "service_started")
    return {name: spec.get("condition", "service_started") for name, spec in raw.items()}


def volume_targets(service: Mapping[str, Any]) -> dict[str, str]:
    """``{container path: source}`` of a service's volumes (short syntax)."""
    found: dict[str, str] = {}
    for item in service.get("volumes") or []:
        parts = str(item).split(":")
        found[parts[1]] = parts[0]
    return found


@dataclass
class LocalMap:
    """How compose names, ports and container paths become local ones."""

    tmp: Path
    ports: dict[str, int]  # app service → its free local port
    postgres: tuple[str, int]  # host, port of the local PostgreSQL
    amqp_url: str  # the local RabbitMQ (its own credentials and vhost)
    redis_url: str  # the local Redis (its own database, no password)
    compose_ports: dict[str, int] = field(default_factory=dict)  # service → compose port

    def url(self, value: str) -> str:
        """``value`` with a compose host name in a URL replaced by the local server."""
        parts = urlsplit(value)
        host = parts.hostname or ""
        if parts.scheme.startswith("postgresql") and host == "postgres":
            user = parts.username or ""
            netloc = f"{user}@{self.postgres[0]}:{self.postgres[1]}"
            return urlunsplit(parts._replace(netloc=netloc))
        if parts.scheme == "amqp" and host == "rabbitmq":
            return self.amqp_url
        if parts.scheme == "redis" and host == "redis":
            return self.redis_url
        if host in self.ports:
            assert parts.port == self.compose_ports[host], (
                f"{value}: {host} listens on {self.compose_ports[host]} in compose")
            return urlunsplit(parts._replace(netloc=f"127.0.0.1:{self.ports[host]}"))
        return value

    def path(self, value: str, mounts: Mapping[str, Path]) -> str:
        """``value`` with a container path under a mount replaced by the local directory."""
        for target, local in sorted(mounts.items(), key=lambda m: -len(m[0])):
            if value == target or value.startswith(target + "/"):
                return str(local) + value[len(target):]
        return value


URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)


def local_environment(name: str, service: Mapping[str, Any], env_file: Mapping[str, str],
                      mapping: LocalMap) -> tuple[dict[str, str], dict[str, Path]]:
    """The local environment of compose service ``name``, and its container paths' local
    directories (named volumes are shared by every service that mounts them; the rest
    of the image's file system, e.g. its var dir, is the service's own)."""
    mounts: dict[str, Path] = {}
    for target, source in volume_targets(service).items():
        if source.startswith((".", "/")):
            mounts[target] = (ROOT / source).resolve()
        else:
            mounts[target] = mapping.tmp / "volumes" / source
    image_env = dockerfile_env()
    var_dir = image_env["CHARTER_VAR_DIR"]
    mounts.setdefault(var_dir, mapping.tmp / "containers" / name / var_dir.strip("/"))
    for local in mounts.values():
        local.mkdir(parents=True, exist_ok=True)
    env = {**image_env, **env_file, **service_environment(service)}
    out: dict[str, str] = {}
    for key, value in env.items():
        if URL.match(value):
            value = mapping.url(value)
        elif value.startswith("/"):
            value = mapping.path(value, mounts)
        out[key] = value
    if out.get("CHARTER_HOST") == "0.0.0.0":
        out["CHARTER_HOST"] = "127.0.0.1"  # nothing listens beyond this machine
    for app, port in mapping.ports.items():
        out[f"{app.upper()}_PORT"] = str(port)
    return out, mounts


def local_argv(argv: list[str], mounts: Mapping[str, Path], mapping: LocalMap) -> list[str]:
    """A container command line run here: ``charter`` is the virtualenv's, container
    paths are the local directories."""
    out = []
    for i, arg in enumerate(argv):
        if i == 0 and arg == "charter":
            arg = str(VENV_BIN / "charter")
        elif arg.startswith("/"):
            arg = mapping.path(arg, mounts)
        out.append(arg)
    return out
