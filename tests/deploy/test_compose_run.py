"""docker-compose.yml's Charter services, run on this machine without a Docker engine.

Every compose service is taken in ``depends_on`` order, with its compose environment
(``charter secrets init`` writes the env file into the tmp dir) and the Dockerfile's
ENTRYPOINT + its ``command``; compose host names are mapped to 127.0.0.1, compose ports
to free local ports, named volumes to shared tmp directories. PostgreSQL, RabbitMQ and
Redis are the real local servers: PostgreSQL gets its roles and databases from the
compose file's own init script (unique names per run, dropped afterwards), RabbitMQ its
own vhost when ``rabbitmqctl`` is usable. The one-shot jobs (pki, migrate, topology)
must exit 0; every Charter service must pass its compose healthcheck command. A compose
file whose commands cannot start fails here.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from dotenv import dotenv_values

from charter.config import PORTS
from tests.deploy import compose_support as cs
from tests.support.brokers import AMQP_TEST_URL, require_rabbitmq
from tests.support.databases import (
    POSTGRES_ADMIN_URL,
    REDIS_TEST_URL,
    drop_databases,
    fresh_redis_database,
    require_postgres,
    skip_or_fail,
)
from tests.support.servers import free_ports

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.redis]

START_TIMEOUT = 300.0  # seconds for every service to become healthy (a loaded machine)
JOB_TIMEOUT = 120.0


@dataclass
class Running:
    """A started compose service."""

    name: str
    proc: subprocess.Popen[bytes]
    env: dict[str, str]
    mounts: dict[str, Path]
    log: Path
    out: IO[bytes]

    def tail(self, chars: int = 3000) -> str:
        self.out.flush()
        return f"--- {self.name} ({self.log}) ---\n" + self.log.read_text(errors="replace")[-chars:]


def _postgres_host_port() -> tuple[str, int]:
    from sqlalchemy.engine import make_url

    url = make_url(POSTGRES_ADMIN_URL)
    return url.host or "127.0.0.1", url.port or 5432


def _psql_env(host: str, port: int) -> dict[str, str]:
    from sqlalchemy.engine import make_url

    url = make_url(POSTGRES_ADMIN_URL)
    return {"PGHOST": host, "PGPORT": str(port), "POSTGRES_USER": url.username or "postgres",
            "POSTGRES_DB": url.database or "postgres"}


@contextlib.contextmanager
def _rabbit_vhost(tag: str) -> Iterator[str]:
    """A vhost of its own on the local RabbitMQ (so no other test's consumer shares the
    platform's queues), deleted afterwards; the default vhost without ``rabbitmqctl``."""
    ctl = shutil.which("rabbitmqctl")
    parts = urlsplit(AMQP_TEST_URL)
    vhost = f"charter_compose_{tag}"
    user = parts.username or "guest"

    def ctl_run(*args: str) -> bool:
        if ctl is None:
            return False
        try:
            done = subprocess.run([ctl, "-q", *args], capture_output=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            return False
        return done.returncode == 0

    if ctl_run("add_vhost", vhost) and ctl_run("set_permissions", "-p", vhost, user,
                                               ".*", ".*", ".*"):
        try:
            yield urlunsplit(parts._replace(path=f"/{vhost}"))
        finally:
            ctl_run("delete_vhost", vhost)
    else:
        yield AMQP_TEST_URL


def _secrets_init(env_file: Path, prefix: str) -> dict[str, str]:
    done = subprocess.run(
        [str(cs.VENV_BIN / "charter"), "secrets", "init", "--env-file", str(env_file),
         "--db-prefix", prefix],
        capture_output=True, text=True, timeout=60, cwd=cs.ROOT,
        env={**os.environ, "CHARTER_ENV": "production"})
    assert done.returncode == 0, done.stderr
    return {k: v or "" for k, v in dotenv_values(env_file).items()}


def _run_postgres_init(service: dict[str, Any], env_file: dict[str, str]) -> None:
    """The compose file's PostgreSQL init scripts, against the local server."""
    if shutil.which("psql") is None:
        skip_or_fail("psql (PostgreSQL's client) is not installed")
    init_dir = next(Path(cs.ROOT / src) for target, src in cs.volume_targets(service).items()
                    if target == "/docker-entrypoint-initdb.d")
    scripts = sorted(init_dir.glob("*.sh"))
    assert scripts, f"no init script in {init_dir}"
    host, port = _postgres_host_port()
    env = {**os.environ, **env_file, **cs.service_environment(service), **_psql_env(host, port)}
    for script in scripts:
        done = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, f"{script.name}:\n{done.stdout}\n{done.stderr}"


def _drop_roles(names: list[str]) -> None:
    from sqlalchemy import create_engine, text

    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            for name in names:
                conn.execute(text(f'DROP ROLE IF EXISTS "{name}"'))
    finally:
        admin.dispose()


def _local_ready(running: Running, pki: Path) -> bool:
    """A cheap in-process poll of the service's /health/ready (before the real check)."""
    name = running.name
    port = running.env[f"{name.upper()}_PORT"]
    mtls = name not in ("auth", "gateway")
    url = f"{'https' if mtls else 'http'}://127.0.0.1:{port}/health/ready"
    verify: ssl.SSLContext | bool = True
    if mtls:
        verify = ssl.create_default_context(cafile=str(pki / "ca.pem"))
        verify.load_cert_chain(pki / "charter-cli.pem", pki / "charter-cli-key.pem")
    try:
        return httpx.get(url, verify=verify, timeout=2).status_code == 200
    except (httpx.HTTPError, OSError):
        return False


def _diagnose(running: Running, mapping: cs.LocalMap) -> str:
    """The service's log and what its /health/ready answers (for a failure message)."""
    name, pki = running.name, mapping.tmp / "volumes" / "pki"
    port = running.env[f"{name.upper()}_PORT"]
    mtls = name not in ("auth", "gateway")
    url = f"{'https' if mtls else 'http'}://127.0.0.1:{port}/health/ready"
    verify: ssl.SSLContext | bool = True
    if mtls:
        verify = ssl.create_default_context(cafile=str(pki / "ca.pem"))
        verify.load_cert_chain(pki / "charter-cli.pem", pki / "charter-cli-key.pem")
    try:
        resp = httpx.get(url, verify=verify, timeout=2)
        answer = f"{resp.status_code} {resp.text[:500]}"
    except (httpx.HTTPError, OSError) as exc:
        answer = repr(exc)
    return f"{running.tail()}\n{url}: {answer}"


def _healthcheck(running: Running, service: dict[str, Any], mapping: cs.LocalMap) -> bool:
    """The service's own compose healthcheck command, run with its environment."""
    test = cs.as_list(service["healthcheck"]["test"])
    assert test[0] == "CMD", f"{running.name}: healthcheck must be exec form (CMD …)"
    argv = cs.local_argv(test[1:], running.mounts, mapping)
    done = subprocess.run(argv, env=running.env, capture_output=True, timeout=30)
    return done.returncode == 0


def test_every_compose_service_command_becomes_healthy(tmp_path: Path) -> None:
    require_postgres()
    require_rabbitmq()
    started = time.monotonic()
    compose = cs.load_compose()
    svcs = cs.services(compose)
    tag = uuid.uuid4().hex[:8]
    prefix = f"charter_ct{tag}"
    env_file = _secrets_init(tmp_path / "compose.env", prefix)
    db_names = [f"{prefix}_{c}" for c in cs.APP_SERVICES if c != "gateway"]
    entrypoint = cs.dockerfile_entrypoint()
    procs: dict[str, Running] = {}
    try:
        with fresh_redis_database() as redis_url, _rabbit_vhost(tag) as amqp_url:
            mapping = cs.LocalMap(
                tmp=tmp_path, postgres=_postgres_host_port(), amqp_url=amqp_url,
                redis_url=redis_url or REDIS_TEST_URL,
                ports=dict(zip(cs.APP_SERVICES, free_ports(len(cs.APP_SERVICES)),
                               strict=True)),
                compose_ports={name: PORTS[name] for name in cs.APP_SERVICES})
            done: dict[str, str] = {}  # name → "healthy" | "completed"
            timeline: list[str] = []
            pending = [n for n in svcs if n not in cs.OBSERVABILITY]
            deadline = time.monotonic() + START_TIMEOUT
            while pending:
                assert time.monotonic() < deadline, (
                    f"not healthy after {START_TIMEOUT:.0f} s: {pending}\n"
                    + "\n".join(timeline) + "\n"
                    + "\n".join(_diagnose(procs[n], mapping) for n in pending if n in procs))
                progressed = False
                for name in list(pending):
                    service = svcs[name]
                    if name in procs:
                        run = procs[name]
                        assert run.proc.poll() is None, f"{name} exited\n{run.tail()}"
                        pki_dir = mapping.tmp / "volumes" / "pki"
                        if _local_ready(run, pki_dir) and _healthcheck(run, service, mapping):
                            done[name] = "healthy"
                            timeline.append(f"{time.monotonic() - started:5.1f} s {name} healthy")
                            pending.remove(name)
                            progressed = True
                        continue
                    needs = cs.depends_on(service)
                    if not all(_satisfied(done, dep, cond) for dep, cond in needs.items()):
                        continue
                    progressed = True
                    if name == "postgres":
                        _run_postgres_init(service, env_file)
                        done[name] = "healthy"
                    elif name in cs.LOCAL_SERVERS:
                        done[name] = "healthy"  # required above / fresh_redis_database
                    else:
                        env, mounts = cs.local_environment(name, service, env_file, mapping)
                        argv = cs.local_argv(
                            entrypoint + cs.as_list(service.get("command")), mounts, mapping)
                        log = tmp_path / f"{name}.log"
                        out = log.open("wb")
                        if name in cs.JOBS:
                            rc = subprocess.run(argv, env=env, stdout=out,
                                                stderr=subprocess.STDOUT, timeout=JOB_TIMEOUT,
                                                cwd=tmp_path).returncode
                            out.close()
                            assert rc == 0, f"job {name} exited {rc}\n" + log.read_text()[-3000:]
                            done[name] = "completed"
                            timeline.append(f"{time.monotonic() - started:5.1f} s {name} completed")
                        else:
                            proc = subprocess.Popen(argv, env=env, stdout=out,
                                                    stderr=subprocess.STDOUT, cwd=tmp_path)
                            procs[name] = Running(name, proc, env, mounts, log, out)
                            continue
                    pending.remove(name)
                if not progressed:
                    time.sleep(0.5)
            assert set(cs.APP_SERVICES) <= {n for n, s in done.items() if s == "healthy"}
            assert set(cs.JOBS) <= {n for n, s in done.items() if s == "completed"}
            print("\n".join(timeline))
    finally:
        for run in procs.values():
            if run.proc.poll() is None:
                run.proc.terminate()
        for run in procs.values():
            try:
                run.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                run.proc.kill()
                run.proc.wait(timeout=5)
            run.out.close()
        drop_databases(db_names)
        _drop_roles(db_names)


def _satisfied(done: dict[str, str], dep: str, condition: str) -> bool:
    if dep in cs.OBSERVABILITY:
        return True  # not started here
    if condition == "service_completed_successfully":
        return done.get(dep) == "completed"
    if condition == "service_healthy":
        return done.get(dep) == "healthy"
    return dep in done
