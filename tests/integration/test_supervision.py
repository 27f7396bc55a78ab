"""``charter up`` supervises its processes, on the real platform (``CHARTER_WORKERS=2``).

* ``kill -9`` of one catalog worker, then of every catalog process: the runner logs and
  counts the restart (its output and ``<var>/supervisor.json``), the gateway keeps serving
  the other services meanwhile (exchange rates through the gateway, auth's health), and
  catalog answers through the gateway again within a bounded time.
* a component that cannot start (its port held by another socket, so every worker fails
  to bind) makes ``charter up`` exit non-zero, naming it, within a bounded time.
* Ctrl-C stops every process and restarts none.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.platform import COMPONENTS, ROOT, Platform, running, stop
from tests.support.polling import wait_until
from tests.support.servers import free_ports

pytestmark = pytest.mark.e2e

WORKERS = 2
RECOVERY = 30.0  # seconds catalog may take to answer again (back-off 0.5–1 s + start-up)


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    tmp_path = tmp_path_factory.mktemp("supervision")
    with running(tmp_path, "sqlite", extra_env={"CHARTER_WORKERS": str(WORKERS)}) as up:
        yield up


@pytest.fixture(scope="module")
def token(platform: Platform) -> str:
    return platform.token("demo-cli")


def status(platform: Platform) -> dict[str, Any]:
    """The runner's ``supervisor.json``."""
    path = Path(platform.env["CHARTER_VAR_DIR"]) / "supervisor.json"
    found: dict[str, Any] = json.loads(path.read_text())
    return found


def catalog(platform: Platform) -> dict[str, Any]:
    entry: dict[str, Any] = status(platform)["components"]["catalog"]
    return entry


def _parent(pid: int) -> int | None:
    """The parent of a live process (``None``: gone, or a zombie not reaped yet)."""
    try:
        stat = (Path("/proc") / str(pid) / "stat").read_text()
        state, parent = stat.rsplit(")", 1)[1].split()[:2]
    except (OSError, ValueError):
        return None
    return None if state == "Z" else int(parent)


def all_workers_running(platform: Platform) -> list[int] | None:
    """catalog's pids from the status file once both workers run (children of the runner)."""
    pids: list[int] = catalog(platform)["pids"]
    if len(pids) == WORKERS and all(_parent(p) == platform.proc.pid for p in pids):
        return pids
    return None


def restarted(platform: Platform, killed: list[int]) -> list[int] | None:
    """catalog's pids once none of ``killed`` is among them and both workers run."""
    running = all_workers_running(platform)
    return running if running and not set(running) & set(killed) else None


def gateway_get(platform: Platform, path: str, token: str) -> int:
    """``GET`` through the gateway on a fresh connection; the status (0: no answer)."""
    try:
        with httpx.Client(timeout=5) as http:
            r = http.get(f"{platform.url('gateway')}{path}",
                         headers={"Authorization": f"Bearer {token}"})
    except httpx.HTTPError:
        return 0
    return r.status_code


def log_text(platform: Platform) -> str:
    return platform.log.read_text(errors="replace")


def kill_and_watch(platform: Platform, token: str,
                   victims: list[int]) -> tuple[list[int], list[int]]:
    """``kill -9`` ``victims``; until catalog answers again through the gateway, ask the
    gateway for exchange rates and auth for its health. Returns the statuses of those
    other services and catalog's, in order."""
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    others: list[int] = []
    catalog_statuses: list[int] = []

    def catalog_back() -> bool:
        others.append(gateway_get(platform, "/exchange/v1/rates?from=EUR&to=USD", token))
        with httpx.Client(timeout=5) as http:
            others.append(http.get(f"{platform.url('auth')}/health/ready").status_code)
        catalog_statuses.append(
            gateway_get(platform, "/catalog/v1/products?page_size=1", token))
        return catalog_statuses[-1] == 200

    wait_until(catalog_back, timeout=RECOVERY, interval=0.2, what="catalog answering again")
    assert platform.proc.poll() is None, log_text(platform)[-3000:]
    return others, catalog_statuses


def test_a_killed_worker_is_restarted_and_counted_while_the_others_serve(
        platform: Platform, token: str) -> None:
    pids = wait_until(lambda: all_workers_running(platform), timeout=60, interval=0.2,
                      what="both catalog workers running")
    before = catalog(platform)["restarts"]
    victim = pids[0]

    seen, _ = kill_and_watch(platform, token, [victim])

    assert seen and set(seen) == {200}, seen  # exchange and auth never missed a beat
    after = wait_until(lambda: restarted(platform, [victim]), timeout=RECOVERY,
                       interval=0.2, what="catalog's worker restarted")
    assert victim not in after and pids[1] in after  # the other worker was left alone
    entry = catalog(platform)
    assert entry["restarts"] == before + 1 and entry["last_exit"] == -9
    log = log_text(platform)
    assert (f"catalog[worker 1] exited with -9 (SIGKILL); restarting in 0.5s "
            f"(restart #{before + 1})") in log
    assert f"catalog[worker 1] restarted (pid {after[0]})" in log
    assert "charter: stopping" not in log


def test_every_catalog_process_killed_comes_back_while_the_gateway_serves_the_rest(
        platform: Platform, token: str) -> None:
    pids = wait_until(lambda: all_workers_running(platform), timeout=60, interval=0.2,
                      what="both catalog workers running")
    before = catalog(platform)["restarts"]
    others = {name: status(platform)["components"][name]["pids"]
              for name in COMPONENTS if name != "catalog"}

    seen, catalog_statuses = kill_and_watch(platform, token, pids)

    assert catalog_statuses[0] != 200, catalog_statuses  # catalog was down for a while…
    assert seen and set(seen) == {200}, seen  # …and the gateway served the others meanwhile
    after = wait_until(lambda: restarted(platform, pids), timeout=RECOVERY,
                       interval=0.2, what="both catalog workers restarted")
    assert not set(after) & set(pids)
    assert catalog(platform)["restarts"] == before + 2
    log = log_text(platform)
    for worker in (1, 2):
        assert f"catalog[worker {worker}] exited with -9 (SIGKILL); restarting in" in log
    # nothing else was restarted
    assert {name: status(platform)["components"][name]["pids"] for name in others} == others
    assert all(status(platform)["components"][n]["restarts"] == 0 for n in others)


def startup_env(tmp_path: Path) -> dict[str, str]:
    """An environment like ``tests.support.platform.start``'s (own var dir, free ports)."""
    inherited = ("CHARTER_SERVICE", "CHARTER_PKI_DIR", "CHARTER_MTLS")
    env = {k: v for k, v in os.environ.items()
           if not k.endswith("_URL") and k not in inherited}
    env.update({"CHARTER_VAR_DIR": str(tmp_path / "var"), "PYTHONUNBUFFERED": "1",
                "CHARTER_WORKERS": str(WORKERS)})
    for comp, port in zip(COMPONENTS, free_ports(len(COMPONENTS)), strict=True):
        env[f"{comp.upper()}_PORT"] = str(port)
    return env


def test_a_component_that_keeps_crashing_at_start_up_stops_charter_up_naming_it(
        tmp_path: Path) -> None:
    env = startup_env(tmp_path)
    # Another program holds catalog's port (without SO_REUSEPORT): no worker can bind it.
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", int(env["CATALOG_PORT"])))
    squatter.listen()
    log = tmp_path / "charter-up.log"
    try:
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "charterctl.cli", "up", "--only", "catalog"],
                env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
            try:
                code = proc.wait(timeout=90)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    finally:
        squatter.close()
    text = log.read_text(errors="replace")
    assert code == 1, text[-3000:]
    assert "charter: catalog keeps crashing at start-up (last exit code 1; 5 times in a row)" \
        in text, text[-3000:]
    assert "catalog[worker 1] exited with 1; restarting in 0.5s (restart #1)" in text \
        or "catalog[worker 2] exited with 1; restarting in 0.5s (restart #1)" in text
    assert "Charter is up" not in text
    final = json.loads((tmp_path / "var" / "supervisor.json").read_text())
    assert final["stopping"] is True and final["components"]["catalog"]["pids"] == []
    assert final["components"]["catalog"]["last_exit"] == 1


def test_ctrl_c_stops_every_process_and_restarts_nothing(platform: Platform) -> None:
    """Last in this module: it stops the shared platform."""
    running_pids = [p for entry in status(platform)["components"].values()
                    for p in entry["pids"]]
    assert running_pids

    assert stop(platform) == 0  # SIGINT to the runner

    log = log_text(platform)
    assert "charter: stopping…" in log
    after_stop = log.split("charter: stopping…", 1)[1]
    assert "restarting in" not in after_stop and "restarted (pid" not in after_stop, \
        after_stop[-2000:]
    final = status(platform)
    assert final["stopping"] is True
    assert all(entry["pids"] == [] for entry in final["components"].values())
    assert all(_parent(pid) is None for pid in running_pids)  # none left running
