"""``python -m bench.checkout_cpu --n 300``: CPU milliseconds per v2 checkout, per component.

Starts a platform as ``make bench`` does (:mod:`bench.platform`), runs a few warm-up
checkouts, then ``--n`` waiting checkouts (``Prefer: wait=5``, :mod:`bench.checkout_v2`) at
``--clients`` concurrent clients, and reads each component's CPU time (user + system of
every process of the component and its descendants, from ``/proc/<pid>/stat``; pids from
the supervisor's status file) before and after. After the last answer it waits until the
asynchronous tail (loyalty's and notifications' consumers, every relay) is idle again, so
that work is counted too. Prints CPU ms per checkout per component and in total; the idle
rate measured before the run (pollers) is shown and subtracted in the last column.

CPU time per checkout hardly depends on what else runs on the machine, unlike latency:
this is the figure to compare two versions of the code with.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import checkout_v2
from bench.__main__ import alice_token, checkout_products
from bench.platform import COMPONENTS, BenchError, Platform, start, stop

TICKS = os.sysconf("SC_CLK_TCK")
IDLE_SECONDS = 5.0  # how long the idle rate is measured before the run
SETTLE_STEP = 0.5  # seconds between two looks while waiting for the tail to finish
SETTLE_TIMEOUT = 30.0
START_TIMEOUT = 600.0  # a loaded 2-core machine can take minutes to start nine services


def _children() -> dict[int, list[int]]:
    """Every process's children (from each ``/proc/<pid>/stat``'s ppid)."""
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def _cpu_seconds(pid: int) -> float:
    """utime + stime of one process (its reaped children excluded), 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS  # fields 14 and 15 of stat(5)


def component_pids(platform: Platform) -> dict[str, list[int]]:
    """Each component's worker pids and their descendants (supervisor status file)."""
    status = json.loads((platform.var_dir / "supervisor.json").read_text())
    tree = _children()
    pids: dict[str, list[int]] = {}
    for name, record in status["components"].items():
        todo, seen = list(record["pids"]), []
        while todo:
            pid = todo.pop()
            seen.append(pid)
            todo.extend(tree.get(pid, []))
        pids[name] = seen
    return pids


def cpu_by_component(pids: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds used so far by each component's processes."""
    return {name: sum(_cpu_seconds(p) for p in group) for name, group in pids.items()}


def _delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {name: after[name] - before.get(name, 0.0) for name in after}


def settle(pids: dict[str, list[int]], idle_rate: float) -> None:
    """Wait until the whole platform uses no more CPU than when idle (plus a margin)."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    last = sum(cpu_by_component(pids).values())
    while time.monotonic() < deadline:
        time.sleep(SETTLE_STEP)
        now = sum(cpu_by_component(pids).values())
        if (now - last) / SETTLE_STEP <= idle_rate * 1.5 + 0.02:
            return
        last = now


def start_profiles(pids: dict[str, list[int]], components: list[str], out: Path
                   ) -> list[subprocess.Popen[bytes]]:
    """``py-spy record --gil`` (raw, folded stacks) of every process of ``components``
    into ``out/<component>.<pid>.txt`` until stopped; py-spy's own CPU is not counted."""
    spy = os.environ.get("PY_SPY") or shutil.which("py-spy")
    if not spy:
        raise BenchError("--profile needs py-spy (on PATH, or PY_SPY=/path/to/py-spy)")
    out.mkdir(parents=True, exist_ok=True)
    return [subprocess.Popen([spy, "record", "--gil", "-r", "100", "-f", "raw", "-p", str(pid),
                              "-o", str(out / f"{name}.{pid}.txt")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for name in components for pid in pids.get(name, [])]


def stop_profiles(spies: list[subprocess.Popen[bytes]]) -> None:
    """Stop the profilers (SIGINT: py-spy writes its file then)."""
    for spy in spies:
        spy.send_signal(2)
    for spy in spies:
        try:
            spy.wait(timeout=30)
        except subprocess.TimeoutExpired:
            spy.kill()


def measure(platform: Platform, n: int, clients: int, warmup: int,
            profile: list[str] | None = None, profile_dir: Path = Path("profiles")
            ) -> dict[str, object]:
    """Warm up, measure the idle rate, run ``n`` checkouts; per-component CPU figures
    (``profile``: components to record with py-spy meanwhile)."""
    alice = alice_token(platform)
    products = checkout_products(platform, n + warmup)
    gateway = platform.url("gateway")
    warm = checkout_v2.run(gateway, alice, products, clients, warmup,
                           wait=checkout_v2.WAIT, name="warm-up")
    if warm.errors:
        raise BenchError(f"warm-up checkouts failed: {warm.errors[:3]}")
    pids = component_pids(platform)
    settle(pids, 0.05)
    before_idle = cpu_by_component(pids)
    time.sleep(IDLE_SECONDS)
    before = cpu_by_component(pids)
    idle = {k: v / IDLE_SECONDS for k, v in _delta(before, before_idle).items()}
    spies = start_profiles(pids, profile, profile_dir) if profile else []
    began = time.monotonic()
    try:
        run = checkout_v2.run(gateway, alice, products, clients, n, wait=checkout_v2.WAIT,
                              name="checkout_v2_wait")
        settle(pids, sum(idle.values()))
    finally:
        stop_profiles(spies)
    elapsed = time.monotonic() - began
    used = _delta(cpu_by_component(pids), before)
    return {"run": run, "used": used, "idle": idle, "elapsed": elapsed, "n": n}


def table(figures: dict[str, object]) -> str:
    """The per-component table (ms per checkout, raw and net of the idle rate)."""
    used: dict[str, float] = figures["used"]  # type: ignore[assignment]
    idle: dict[str, float] = figures["idle"]  # type: ignore[assignment]
    elapsed: float = figures["elapsed"]  # type: ignore[assignment]
    done: int = figures["run"].result.requests  # type: ignore[attr-defined]
    lines = [f"{'component':<14} {'ms/checkout':>12} {'idle ms/s':>10} {'net ms/checkout':>16}"]
    order = [c for c in COMPONENTS if c in used] + sorted(set(used) - set(COMPONENTS))
    total = net_total = 0.0
    for name in order:
        raw = used[name] * 1000 / done
        net = (used[name] - idle[name] * elapsed) * 1000 / done
        total, net_total = total + raw, net_total + net
        lines.append(f"{name:<14} {raw:12.1f} {idle[name] * 1000:10.1f} {net:16.1f}")
    lines.append(f"{'total':<14} {total:12.1f} {sum(idle.values()) * 1000:10.1f} "
                 f"{net_total:16.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Parse the options, start the platform, measure, print the table(s)."""
    parser = argparse.ArgumentParser(prog="python -m bench.checkout_cpu", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=300, help="measured checkouts (default 300)")
    parser.add_argument("--clients", type=int, default=10, help="concurrent clients (10)")
    parser.add_argument("--warmup", type=int, default=30, help="warm-up checkouts (30)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="measured runs on the same platform (default 1)")
    parser.add_argument("--profile", action="append", metavar="COMPONENT",
                        help="record COMPONENT's processes with py-spy during the measured "
                        "runs (repeatable; files under --profile-dir)")
    parser.add_argument("--profile-dir", type=Path, default=Path("profiles"),
                        help="where the py-spy files go (default ./profiles)")
    parser.add_argument("--work", type=Path,
                        help="the platform's directory, kept afterwards (its charter-up.log "
                        "says why a start failed); default: a temporary one, removed")
    args = parser.parse_args(argv)
    try:
        with tempfile.TemporaryDirectory(prefix="charter-cpu-") as tmp:
            work = args.work or Path(tmp)
            work.mkdir(parents=True, exist_ok=True)
            platform = start(work, timeout=START_TIMEOUT)
            try:
                return _runs(platform, args)
            finally:
                stop(platform)
    except BenchError as exc:
        print(f"bench.checkout_cpu: {exc}", file=sys.stderr)
        return 2


def _runs(platform: Platform, args: argparse.Namespace) -> int:
    """The measured runs on a started platform; the exit status."""
    for i in range(args.repeat):
        figures = measure(platform, args.n, args.clients, args.warmup if i == 0 else 0,
                          args.profile, args.profile_dir / f"run{i + 1}")
        result = figures["run"].result  # type: ignore[attr-defined]
        errors = figures["run"].errors  # type: ignore[attr-defined]
        print(f"\nrun {i + 1}: {result.requests} checkouts at {args.clients} clients, "
              f"{result.rps:.1f}/s, p50 {result.p50_ms:.0f} ms, p99 "
              f"{result.p99_ms:.0f} ms, errors {len(errors)}, statuses "
              f"{result.statuses}; {figures['elapsed']:.1f} s until idle")
        print(table(figures), flush=True)
        if errors:
            print("errors: " + "; ".join(errors[:5]), file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
