"""The servers the benchmark starts beside the platform: the two peers and the trivial
mTLS endpoint, each a subprocess in its own session, stopped at the end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench.platform import ROOT, BenchError


class Server:
    """One server process; :meth:`wait` until a probe says it answers."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.log = log
        self.proc = subprocess.Popen(argv, env={**os.environ, **env}, cwd=ROOT,
                                     stdout=log.open("wb"), stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def wait(self, probe: Callable[[], bool], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if probe():
                    return
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        tail = self.log.read_text(errors="replace")[-2000:]
        raise BenchError(f"{self.name} did not start:\n{tail}")

    def stop(self) -> None:
        """SIGTERM the process group; SIGKILL it when it does not go within 10 s."""
        if self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def fastapi_peer(port: int, workers: int, env: dict[str, str], log: Path) -> Server:
    """The FastAPI peer under uvicorn (uvloop, httptools) with ``workers`` processes."""
    argv = [sys.executable, "-m", "uvicorn", "bench.peers.fastapi_peer:app",
            "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
            "--loop", "uvloop", "--http", "httptools", "--no-access-log",
            "--log-level", "warning"]
    return Server("FastAPI peer", argv, env, log)


def flask_peer(port: int, env: dict[str, str], log: Path) -> Server:
    """The plain Flask peer on gunicorn, 2 workers × 4 threads (gthread)."""
    argv = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}",
            "--workers", "2", "--threads", "4", "--log-level", "warning",
            "bench.peers.flask_peer:app"]
    return Server("Flask peer", argv, env, log)


def trivial(port: int, pki: Path, log: Path) -> Server:
    """The trivial mTLS endpoint (catalog's certificate, client certificates required)."""
    env = {"BENCH_PORT": str(port), "BENCH_CERT": str(pki / "catalog.pem"),
           "BENCH_KEY": str(pki / "catalog-key.pem"), "BENCH_CA": str(pki / "ca.pem")}
    return Server("trivial mTLS endpoint", [sys.executable, "-m", "bench.trivial"], env, log)
