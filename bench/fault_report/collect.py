"""Run the producers one after the other as subprocesses and keep their JSON (and their
output, ``<name>.log``) under ``<report>/data/``; ``runs.json`` records how each went."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.fault_report.sources import Run, data_file, write_runs

ROOT = Path(__file__).resolve().parents[2]
BENCH_RESULTS = "bench-results"  # where this run's `python -m bench` writes its results

Out = Callable[[str], None]


@dataclass(frozen=True)
class Producer:
    """One measurement the report runs: ``python -m <module> <args>``."""

    name: str
    module: str
    args: tuple[str, ...]
    timeout: float  # seconds before it is stopped

    @property
    def source(self) -> Path:
        """The module's file (a producer another change has not brought yet is absent)."""
        return ROOT / (self.module.replace(".", "/") + ".py")


def producers(data: Path, quick: bool) -> list[Producer]:
    """The producers, in the order they run (``quick``: shorter runs, a smoke test)."""
    def out(name: str) -> str:
        return str(data_file(data, name))

    chaos = (["--n", "30", "-c", "5", "--min-kills", "2", "--max-kills", "3",
              "--kill-interval", "0.5", "1.5", "--settle-timeout", "90"] if quick
             else ["--n", "200"])
    return [
        Producer("failover", "bench.failover",
                 ("--json", out("failover"), *(["--duration", "12"] if quick else [])),
                 timeout=900),
        Producer("chaos", "tests.chaos.chaos", (*chaos, "--json", out("chaos")), timeout=1200),
        Producer("bench", "bench.__main__",
                 ("--results", str(data / BENCH_RESULTS), *(["--quick"] if quick else [])),
                 timeout=1500),
        Producer("replication", "bench.replication", ("--json", out("replication")),
                 timeout=600),
        Producer("restore", "bench.restore_drill",
                 ("--json", out("restore"), *(["--orders", "3"] if quick else [])),
                 timeout=600),
    ]


def latest_bench_result(directory: Path) -> Path | None:
    """The newest ``<UTC stamp>.json`` that ``python -m bench`` wrote in ``directory``."""
    found = sorted(directory.glob("*.json")) if directory.is_dir() else []
    return found[-1] if found else None


def last_line(log: Path) -> str:
    """The last non-empty line of a log (the usual place for the reason of a failure)."""
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines()
             if line.strip()]
    return lines[-1][:300] if lines else "no output"


def run_one(producer: Producer, data: Path, out: Out) -> Run:
    """Run ``producer``, its output to the console and ``<name>.log``; how it went."""
    module = producer.module.removesuffix(".__main__")
    argv = [sys.executable, "-m", module, *producer.args]
    log = data / f"{producer.name}.log"
    out(f"report: {producer.name}: {' '.join(argv[1:])} (log {log})")
    started = time.monotonic()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.open("w") as sink:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        timed_out = threading.Event()

        def stop() -> None:
            timed_out.set()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGINT)  # let it stop what it started
                time.sleep(30)
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)

        timer = threading.Timer(producer.timeout, stop)
        timer.daemon = True
        timer.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                sink.write(line)
                out(f"  {producer.name}| {line.rstrip()}")
            code = proc.wait()
        finally:
            timer.cancel()
    seconds = round(time.monotonic() - started, 1)
    if timed_out.is_set():
        return Run(code, seconds, f"stopped after the {producer.timeout:.0f} s time limit")
    return Run(code, seconds, None if code == 0 else f"exit status {code}: {last_line(log)}")


def collect(data: Path, quick: bool, skip: frozenset[str] = frozenset(),
            out: Out = print) -> dict[str, Run]:
    """Run every producer not in ``skip`` (stale JSON of a previous run is removed first);
    ``runs.json`` is written after each one."""
    data.mkdir(parents=True, exist_ok=True)
    runs: dict[str, Run] = {}
    for producer in producers(data, quick):
        data_file(data, producer.name).unlink(missing_ok=True)
        if producer.name in skip:
            runs[producer.name] = Run(reason="skipped (--skip)")
        elif not producer.source.exists():
            runs[producer.name] = Run(reason=f"{producer.source.relative_to(ROOT)} is not "
                                             "there yet")
        else:
            if producer.name == "bench":
                shutil.rmtree(data / BENCH_RESULTS, ignore_errors=True)
            runs[producer.name] = run_one(producer, data, out)
            if producer.name == "bench":
                newest = latest_bench_result(data / BENCH_RESULTS)
                if newest is not None:
                    shutil.copyfile(newest, data_file(data, "bench"))
        write_runs(data, runs)
        out(f"report: {producer.name}: " + (runs[producer.name].reason or "done")
            + (f" ({runs[producer.name].seconds} s)" if runs[producer.name].seconds else ""))
    return runs
