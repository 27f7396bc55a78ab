"""``bench.gateway_ab``'s parts that need no platform: the 'before' gateway copied out of
git as an importable package, and the CPU reading."""

from __future__ import annotations

import importlib
import os
import sys
import time
from pathlib import Path

import pytest

from bench.gateway_ab import cpu_seconds, extract
from bench.platform import BenchError


def test_the_committed_gateway_becomes_its_own_package(tmp_path: Path) -> None:
    package = extract("HEAD", tmp_path)
    assert package == tmp_path / "gateway_ref"
    assert {"app.py", "settings.py", "routes.py"} <= {p.name for p in package.iterdir()}
    sys.path.insert(0, str(tmp_path))
    try:
        app = importlib.import_module("gateway_ref.app")
        assert callable(app.create_asgi) and app.Gateway.__module__ == "gateway_ref.app"
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m.split(".")[0] == "gateway_ref"]:
            del sys.modules[name]


def test_a_ref_without_the_gateway_is_refused(tmp_path: Path) -> None:
    empty_tree = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"  # git's empty tree
    with pytest.raises(BenchError, match="no services/gateway/app.py"):
        extract(empty_tree, tmp_path)


def test_cpu_seconds_grow_with_work() -> None:
    before = cpu_seconds(os.getpid())
    deadline = time.process_time() + 0.05
    while time.process_time() < deadline:
        pass
    assert cpu_seconds(os.getpid()) - before >= 0.03
