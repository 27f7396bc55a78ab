"""A Charter platform for the benchmark: ``charter --dev up`` on free ports in a temporary
var dir, rate limiting off, demo data seeded, mTLS on; always stopped at the end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from charterctl.ports import free_ports

ROOT = Path(__file__).resolve().parents[1]
COMPONENTS = ("auth", "catalog", "cart", "orders", "payments", "exchange", "loyalty",
              "notifications", "gateway")
PLAIN_HTTP = ("auth", "gateway")


class BenchError(RuntimeError):
    """The run cannot go on (platform not up, an unexpected answer…)."""


@dataclass
class Platform:
    """A running ``charter up`` and the environment it was started with."""

    env: dict[str, str]
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def var_dir(self) -> Path:
        return Path(self.env["CHARTER_VAR_DIR"])

    @property
    def pki_dir(self) -> Path:
        return self.var_dir / "pki"

    def port(self, component: str) -> int:
        return int(self.env[f"{component.upper()}_PORT"])

    def url(self, component: str) -> str:
        scheme = "http" if component in PLAIN_HTTP else "https"
        return f"{scheme}://127.0.0.1:{self.port(component)}"

    def secret(self, name: str) -> str:
        """A development secret: the environment's (as the platform reads it), else the one
        ``charter up --dev`` generated (``var/secrets/NAME``)."""
        given = self.env.get(name)
        if given:
            return given
        return (self.var_dir / "secrets" / name).read_text().strip()

    def catalog_workers(self) -> int:
        """How many worker processes ``charter up`` gives the catalog (asked of the
        runner itself, in the platform's environment, so the peers follow any change)."""
        code = ("from charterctl import registry, runner; "
                "print(runner.worker_count(registry.COMPONENTS['catalog']))")
        done = subprocess.run([sys.executable, "-c", code], env=self.env, cwd=ROOT,
                              capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0:
            raise BenchError(f"cannot read the catalog's worker count: {done.stderr[-400:]}")
        return int(done.stdout.split()[-1])


def _log_tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:] if log.exists() else ""


def start(work: Path, timeout: float = 180.0) -> Platform:
    """Start ``charter --dev up`` with its own var dir under ``work``; wait for its banner."""
    inherited = ("CHARTER_SERVICE", "CHARTER_PKI_DIR", "CHARTER_MTLS", "CHARTER_ENV",
                 "DATABASE_URL", "REDIS_URL")
    env = {k: v for k, v in os.environ.items()
           if not k.endswith("_URL") and k not in inherited and not k.endswith("_DATABASE_URL")}
    env.update({"CHARTER_VAR_DIR": str(work / "var"), "PYTHONUNBUFFERED": "1",
                "GATEWAY_RATE_LIMIT": "0", "CHARTER_MTLS": "1",
                "CHARTER_ENV": "development"})
    for comp, port in zip(COMPONENTS, free_ports(len(COMPONENTS)), strict=True):
        env[f"{comp.upper()}_PORT"] = str(port)
    return launch(work, env, [], timeout)


def launch(work: Path, env: dict[str, str], up_args: list[str], timeout: float) -> Platform:
    """Run ``charter --dev up <up_args>`` in ``env`` (log in ``work/charter-up.log``) and
    wait for its banner; stop it and raise :class:`BenchError` if it does not come."""
    log = work / "charter-up.log"
    argv = [sys.executable, "-m", "charterctl.cli", "--dev", "up", *up_args]
    proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=log.open("wb"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    platform = Platform(env, proc, log)
    deadline = time.monotonic() + timeout
    while "Charter is up" not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(platform)
            what = " ".join(["charter up", *up_args])
            raise BenchError(f"{what} did not start:\n{_log_tail(log)}")
        time.sleep(0.3)
    return platform


def stop(platform: Platform, grace: float = 30.0) -> None:
    """Ctrl-C the platform (its runner stops every child); kill the group if it hangs."""
    proc = platform.proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@contextmanager
def running(work: Path) -> Iterator[Platform]:
    """A started platform, stopped afterwards (also on an error or Ctrl-C)."""
    platform = start(work)
    try:
        yield platform
    finally:
        stop(platform)
