"""Namespace versions shared by worker processes (embedded mode, no Redis): a write in one
worker invalidates every worker's cached entries of that namespace."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from charter.cache import SharedVersions, WorkerSharedCache
from charter.config import ROOT

BUMP = """
import sys
from pathlib import Path
from charter.cache import SharedVersions
versions = SharedVersions(Path(sys.argv[1]))
for _ in range(int(sys.argv[2])):
    versions.incr("__ns__:product")
"""


def bump_in_another_process(path: Path, times: int = 1) -> None:
    subprocess.run([sys.executable, "-c", BUMP, str(path), str(times)], cwd=ROOT, check=True,
                   timeout=60)


def test_an_invalidation_in_another_process_reaches_this_workers_entries(
        tmp_path: Path) -> None:
    path = tmp_path / "catalog.versions"
    cache = WorkerSharedCache(SharedVersions(path))
    products = cache.namespace("product")
    loads: list[str] = []

    def load(name: str) -> dict[str, str]:
        loads.append(name)
        return {"name": name}

    assert products.get_or_load("1", lambda: load("old")) == {"name": "old"}
    assert products.get_or_load("1", lambda: load("unused")) == {"name": "old"}  # a hit
    bump_in_another_process(path)  # the other worker updated product 1
    assert products.get_or_load("1", lambda: load("new")) == {"name": "new"}
    assert loads == ["old", "new"]


def test_concurrent_bumps_from_several_processes_are_all_counted(tmp_path: Path) -> None:
    path = tmp_path / "v"
    procs = [subprocess.Popen([sys.executable, "-c", BUMP, str(path), "200"], cwd=ROOT)
             for _ in range(3)]
    local = SharedVersions(path)
    for _ in range(200):
        local.incr("__ns__:product")
    assert all(p.wait(timeout=60) == 0 for p in procs)
    assert local.get("__ns__:product") == 800


def test_versions_survive_a_restart_and_keys_are_independent(tmp_path: Path) -> None:
    path = tmp_path / "v"
    first = SharedVersions(path)
    assert first.get("a") == 0
    assert first.incr("a") == 1 and first.incr("a") == 2
    again = SharedVersions(path)  # a worker started later (or after a restart)
    assert again.get("a") == 2
    assert again.get("b") in (0, 2)  # another key: its own slot (or a shared one: only
    # more invalidations, never fewer)
    assert path.stat().st_size == SharedVersions.SLOTS * 8
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_delete_and_prefix_invalidation_stay_local(tmp_path: Path) -> None:
    cache = WorkerSharedCache(SharedVersions(tmp_path / "v"))
    cache.set("k", {"x": 1})
    cache.delete("k")
    assert cache.get("k") is None
