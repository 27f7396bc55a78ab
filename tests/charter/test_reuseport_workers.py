"""``python -m charter.serve worker``: several processes on one port (SO_REUSEPORT), and the
kernel spreads new connections over all of them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter

import httpx
import pytest

from charter import serve
from charter.config import ROOT
from tests.support.servers import free_port

WORKERS = 3


def test_each_worker_binds_the_port_and_connections_reach_all_of_them() -> None:
    port = free_port()
    env = {**os.environ, "CHARTER_MTLS": "0"}
    argv = [sys.executable, "-m", "charter.serve", "worker", "probe",
            "tests.charter.worker_app:create_asgi", "127.0.0.1", str(port)]
    procs = [subprocess.Popen(argv, cwd=ROOT, env=env) for _ in range(WORKERS)]
    try:
        served: Counter[int] = Counter()
        deadline = time.monotonic() + 60
        while len(served) < WORKERS and time.monotonic() < deadline:
            try:  # a fresh connection each time: the kernel picks a worker's socket
                with httpx.Client(timeout=5) as client:
                    served[int(client.get(f"http://127.0.0.1:{port}/").text)] += 1
            except httpx.TransportError:
                time.sleep(0.1)  # not every worker listens yet
        assert set(served) == {p.pid for p in procs}, served
        assert all(p.poll() is None for p in procs)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=20)
    # graceful shutdown on SIGTERM (uvicorn re-raises the signal once it has stopped)
    assert {p.returncode for p in procs} <= {0, -signal.SIGTERM}


def test_the_listener_may_be_bound_twice_and_a_plain_socket_may_not() -> None:
    port = free_port()
    first = serve.reuseport_listener("127.0.0.1", port)
    second = serve.reuseport_listener("127.0.0.1", port)
    first.listen()
    second.listen()
    import socket

    plain = socket.socket()
    try:
        with pytest.raises(OSError):
            plain.bind(("127.0.0.1", port))
    finally:
        for sock in (first, second, plain):
            sock.close()


def test_worker_config_matches_the_single_process_command_line(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHARTER_MTLS", "0")
    cfg = serve.worker_config("gateway", "services.gateway.app:create_asgi", "127.0.0.1", 1)
    assert cfg.factory and not cfg.access_log
    assert cfg.timeout_keep_alive == serve.KEEP_ALIVE
    assert cfg.proxy_headers is False  # the gateway finds client addresses itself
    assert cfg.timeout_graceful_shutdown == 5
