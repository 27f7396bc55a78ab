"""Failover under load: kill -9 one of two instances behind the gateway, count what users see.

``python -m bench.failover [--json PATH] [--rate 200] [--duration 30]`` starts
``charter --dev up --replicas catalog=2,exchange=2`` on free ports in a temporary var dir
(SQLite, mTLS on, rate limit off, one worker per instance; only auth, catalog, exchange and
the gateway), then for each service in turn drives a steady *open-loop* load of idempotent
reads through the gateway — request ``i`` is sent at ``t0 + i/rate`` whatever happened to
the earlier ones — and at a third of the run kills every process of the service's
instance 2 with SIGKILL (pids from the supervisor's status file).

The client is asyncio on uvloop with aiohttp over 32 kept-alive connections: a fraction of
httpx's CPU per request, which matters on a shared 2-core machine where the load generator
competes with the platform. A request waiting for a connection waits in the client; one
not answered within 10 s fails (timeout); nothing is dropped. It records per second the
answers (ok = 200) and their latency p50/p99, measured from the *scheduled* send time (a
stall cannot hide), and the moments:

* ``kill -9 <service>#2`` — the SIGKILL;
* ``ejected <service>#2`` — the gateway's ``charter_gateway_upstream_healthy`` gauge for
  that instance reads 0 (polled every 0.1 s on the gateway's ``/metrics``);
* ``restarted <service>#2`` — ``charter up``'s supervisor started its processes again
  (``last_restart_at`` in ``<var>/supervisor.json``);
* ``readmitted <service>#2`` — the gauge reads 1 again.

After the load the watch goes on (at most ``--settle`` s) until the instance is readmitted.
Prints a timeline table; ``--json`` writes ``{"scenarios": [...]}`` (one per service; the
shape ``bench/report`` and the fault-tolerance report read). Exit status 0 when every
scenario had no failed read and its instance was ejected and readmitted, 1 otherwise, 2
when the platform could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import signal
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx

from bench.__main__ import client_credentials
from bench.platform import COMPONENTS, BenchError, Platform, launch, stop
from charterctl.ports import free_ports

REPLICAS = {"catalog": 2, "exchange": 2}
VICTIM = 2  # the instance killed (instance 1 keeps the service's usual port)
READS = {  # an idempotent read per service, through the gateway (demo-cli may read both)
    "catalog": "/catalog/v1/products?page_size=5",
    "exchange": "/exchange/v1/convert?from=EUR&to=USD&amount=1000",
}
HEALTHY_GAUGE = "charter_gateway_upstream_healthy"
POLL = 0.1  # seconds between two looks at the gateway's metrics and the status file
REQUEST_TIMEOUT = 10.0
# Components started: the services read, auth (tokens, JWKS) and the gateway; the others
# would only add their background work (pollers, relays) to a shared machine.
ONLY = ("auth", "catalog", "exchange", "gateway")
# Kept-alive connections to the gateway: requests beyond them wait in the client's pool
# (their latency counts from the scheduled time), instead of opening a connection each
# when answers slow down — a storm of handshakes that would be the harness's doing.
CONNECTIONS = 32


@dataclass
class Sample:
    """One request: when it was due (s since the start), how long until its answer, ok."""

    t: float
    latency: float
    ok: bool
    why: str = ""


@dataclass
class Watch:
    """What happened to the killed instance, in seconds since the start of the run."""

    label: str
    killed_pids: list[int] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    kill: float | None = None
    ejected: float | None = None
    restarted: float | None = None
    readmitted: float | None = None

    def event(self, t: float, what: str) -> None:
        self.events.append({"t": round(t, 2), "what": f"{what} {self.label}"})


# -- the platform ------------------------------------------------------------------------


def start_platform(work: Path, replicas: dict[str, int], workers: str | None = None,
                   timeout: float = 240.0) -> Platform:
    """``charter --dev up --replicas …`` with its own var dir and free ports (the extra
    instances' ports given by ``<SERVICE>_REPLICA_PORTS``) and ``CHARTER_WORKERS=workers``
    (default 1: one process per instance, the smallest platform that shows failover);
    waits for its banner."""
    inherited = ("CHARTER_SERVICE", "CHARTER_PKI_DIR", "CHARTER_MTLS", "CHARTER_ENV",
                 "DATABASE_URL", "REDIS_URL", "CHARTER_REPLICAS", "CHARTER_INSTANCE")
    env = {k: v for k, v in os.environ.items()
           if not k.endswith(("_URL", "_URLS", "_REPLICA_PORTS")) and k not in inherited}
    env.update({"CHARTER_VAR_DIR": str(work / "var"), "PYTHONUNBUFFERED": "1",
                "GATEWAY_RATE_LIMIT": "0", "CHARTER_MTLS": "1",
                "CHARTER_ENV": "development"})
    env["CHARTER_WORKERS"] = workers or "1"
    env.setdefault("CHARTER_READY_TIMEOUT", str(int(timeout)))
    extra = sum(n - 1 for n in replicas.values())
    ports = free_ports(len(COMPONENTS) + extra)
    for comp, port in zip(COMPONENTS, ports, strict=False):
        env[f"{comp.upper()}_PORT"] = str(port)
    spare = iter(ports[len(COMPONENTS):])
    for service, count in replicas.items():
        env[f"{service.upper()}_REPLICA_PORTS"] = ",".join(
            str(next(spare)) for _ in range(count - 1))
    spec = ",".join(f"{s}={n}" for s, n in replicas.items())
    return launch(work, env, ["--replicas", spec, "--only", ",".join(ONLY)], timeout)


def instance_status(platform: Platform, service: str, number: int) -> dict[str, Any]:
    """The supervisor's entry for one instance (``{}`` while the file is being replaced)."""
    try:
        status = json.loads((platform.var_dir / "supervisor.json").read_text())
    except (OSError, ValueError):
        return {}
    for entry in status.get("components", {}).get(service, {}).get("instances", []):
        if entry.get("instance") == number:
            found: dict[str, Any] = entry
            return found
    return {}


def healthy(metrics_text: str, service: str, instance: str) -> float | None:
    """The gateway's ``charter_gateway_upstream_healthy`` for ``instance`` (``host:port``)
    of upstream ``service``; ``None`` when it does not export one."""
    upstream, where = f'upstream="{service}"', f'instance="{instance}"'
    for line in metrics_text.splitlines():
        if line.startswith(HEALTHY_GAUGE + "{") and upstream in line and where in line:
            try:
                return float(line.rsplit(" ", 1)[1])
            except (IndexError, ValueError):
                return None
    return None


# -- one scenario ------------------------------------------------------------------------


async def _drive(client: aiohttp.ClientSession, url: str, rate: float, duration: float,
                 t0: float, samples: list[Sample]) -> None:
    """Send ``rate × duration`` GETs of ``url``, request ``i`` due at ``t0 + i/rate``."""
    pending: set[asyncio.Task[None]] = set()

    async def one(due: float) -> None:
        why = ""
        try:
            async with client.get(url) as resp:
                body = await resp.read()
            ok = resp.status == 200
            if not ok:
                why = f"{resp.status} {body[:160].decode(errors='replace')}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            ok, why = False, f"{type(exc).__name__}: {exc}"
        samples.append(Sample(due - t0, time.perf_counter() - due, ok, why))

    for i in range(int(rate * duration)):
        due = t0 + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(due))
        pending.add(task)
        task.add_done_callback(pending.discard)
    if pending:
        await asyncio.gather(*pending)


async def _watch(platform: Platform, client: httpx.AsyncClient, service: str,
                 watch: Watch, t0: float, wall0: float, kill_at: float,
                 done: asyncio.Event, settle: float) -> None:
    """Kill the instance at ``kill_at`` (s), then note ejection, restart and readmission
    until it is readmitted (or ``settle`` s after ``done`` is set)."""
    instance = instance_status(platform, service, VICTIM)
    key = f"127.0.0.1:{instance.get('port')}"
    settle_until: float | None = None
    while True:
        now = time.perf_counter() - t0
        if done.is_set():
            settle_until = settle_until or now + settle
            if watch.readmitted is not None or now >= settle_until:
                return
        if watch.kill is None and now >= kill_at:
            _kill(platform, service, watch)
            watch.kill = time.perf_counter() - t0
            watch.event(watch.kill, "kill -9")
        elif watch.kill is not None:
            try:
                text = (await client.get("/metrics", timeout=2.0)).text
            except httpx.HTTPError:
                text = ""
            gauge = healthy(text, service, key)
            seen = time.perf_counter() - t0
            if watch.ejected is None and gauge == 0:
                watch.ejected = seen
                watch.event(seen, "ejected")
            if watch.restarted is None:
                entry = instance_status(platform, service, VICTIM)
                pids = entry.get("pids") or []
                if pids and not set(pids) & set(watch.killed_pids):
                    at = entry.get("last_restart_at")
                    watch.restarted = (at - wall0) if isinstance(at, (int, float)) else seen
                    watch.event(watch.restarted, "restarted")
            if (watch.readmitted is None and watch.ejected is not None
                    and watch.restarted is not None and gauge == 1):
                watch.readmitted = seen
                watch.event(seen, "readmitted")
        await asyncio.sleep(POLL)


def _kill(platform: Platform, service: str, watch: Watch) -> None:
    """SIGKILL every process of the victim instance."""
    pids = [int(p) for p in instance_status(platform, service, VICTIM).get("pids") or []]
    if not pids:
        raise BenchError(f"no running process of {watch.label} in supervisor.json")
    watch.killed_pids = pids
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _number(value: float) -> float | int:
    """``200`` for ``200.0`` (the JSON reads like the command line), else the float."""
    return int(value) if float(value).is_integer() else value


def _percentile(values: list[float], q: float) -> float:
    """The nearest-rank percentile: the smallest value with at least ``q`` of them ≤ it."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def timeline(samples: Iterable[Sample], duration: float) -> list[dict[str, Any]]:
    """Per second of the run: ok and failed answers, latency p50 and p99 (ms)."""
    seconds: list[list[Sample]] = [[] for _ in range(max(1, int(duration + 0.999)))]
    for s in samples:
        seconds[min(len(seconds) - 1, int(s.t))].append(s)
    out = []
    for t, group in enumerate(seconds):
        latencies = [s.latency * 1000 for s in group if s.ok]
        out.append({"t": t, "ok": sum(s.ok for s in group),
                    "failed": sum(not s.ok for s in group),
                    "p50_ms": round(_percentile(latencies, 0.5), 1) if latencies else None,
                    "p99_ms": round(_percentile(latencies, 0.99), 1) if latencies else None})
    return out


async def _scenario(platform: Platform, bearer: str, service: str, rate: float,
                    duration: float, settle: float) -> tuple[dict[str, Any], list[Sample]]:
    headers = {"Authorization": f"Bearer {bearer}"}
    gateway = platform.url("gateway")
    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    async with aiohttp.ClientSession(base_url=gateway, headers=headers, connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
                                     ) as load, \
            httpx.AsyncClient(base_url=gateway, timeout=2.0) as probe:
        for _ in range(20):  # warm up: connections, caches, both instances
            async with load.get(READS[service]) as resp:
                text = await resp.text()
            if resp.status != 200:
                raise BenchError(f"{service}: warm-up read answered {resp.status}: "
                                 f"{text[:300]}")
        samples: list[Sample] = []
        watch = Watch(f"{service}#{VICTIM}")
        done = asyncio.Event()
        t0, wall0 = time.perf_counter() + 0.2, time.time() + 0.2
        watcher = asyncio.create_task(_watch(platform, probe, service, watch, t0, wall0,
                                             duration / 3, done, settle))
        try:
            await _drive(load, READS[service], rate, duration, t0, samples)
        finally:
            done.set()
        await watcher
    failed = sum(not s.ok for s in samples)
    result = {
        "service": service, "rate": _number(rate), "duration_s": _number(duration),
        "total": len(samples),
        "failed": failed, "seconds": timeline(samples, duration),
        "events": sorted(watch.events, key=lambda e: e["t"]),
        "ejected_after_s": (round(watch.ejected - watch.kill, 2)
                            if watch.ejected is not None and watch.kill is not None
                            else None),
        "readmitted_after_restart_s": (round(watch.readmitted - watch.restarted, 2)
                                       if watch.readmitted is not None
                                       and watch.restarted is not None else None),
    }
    return result, samples


def _run_async(coro: Any) -> Any:
    """``asyncio.run`` on uvloop when it is installed (it is, with uvicorn[standard])."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - a dependency of the platform
        return asyncio.run(coro)
    return uvloop.run(coro)


def run(work: Path, *, rate: float = 200, duration: float = 30,
        services: Iterable[str] = ("catalog", "exchange"), settle: float = 30.0,
        workers: str | None = None, out: Any = sys.stdout) -> dict[str, Any]:
    """Start the platform under ``work``, run one scenario per service, stop it; the
    ``{"scenarios": [...]}`` document. Failed reads are printed, counted by reason."""
    names = list(services)
    unknown = [s for s in names if s not in READS]
    if unknown:
        raise BenchError(f"no read scenario for {', '.join(unknown)}; known: "
                         f"{', '.join(READS)}")
    platform = start_platform(work, {s: REPLICAS[s] for s in names}, workers)
    scenarios = []
    try:
        bearer = client_credentials(platform)
        for service in names:
            result, samples = _run_async(
                _scenario(platform, bearer, service, rate, duration, settle))
            scenarios.append(result)
            print(render(result), file=out, flush=True)
            reasons: dict[str, list[float]] = {}
            for s in samples:
                if not s.ok:
                    reasons.setdefault(s.why[:200], []).append(s.t)
            for why, times in sorted(reasons.items(), key=lambda kv: kv[1][0]):
                print(f"  {len(times)} failed (first at t={times[0]:.2f}s): {why}",
                      file=out, flush=True)
    finally:
        stop(platform)
    return {"scenarios": scenarios}


def passed(scenario: dict[str, Any]) -> bool:
    """No failed read, the instance ejected and readmitted."""
    return (scenario["failed"] == 0 and scenario["ejected_after_s"] is not None
            and scenario["readmitted_after_restart_s"] is not None)


def render(scenario: dict[str, Any]) -> str:
    """The scenario as a small text table: one row per second, events beside their
    second."""
    ejected, readmitted = scenario["ejected_after_s"], scenario["readmitted_after_restart_s"]
    head = (f"\n{scenario['service']}: {scenario['rate']:g} req/s for "
            f"{scenario['duration_s']:g} s — {scenario['total']} reads, "
            f"{scenario['failed']} failed; ejected "
            + (f"{ejected:.2f} s after the kill" if ejected is not None else "never")
            + ", readmitted "
            + (f"{readmitted:.2f} s after the restart" if readmitted is not None
               else "never"))
    rows = [head, f"{'t':>4} {'ok':>5} {'failed':>6} {'p50 ms':>7} {'p99 ms':>7}  events"]
    by_second: dict[int, list[str]] = {}
    for event in scenario["events"]:
        by_second.setdefault(int(event["t"]), []).append(f"{event['what']} ({event['t']:.2f})")
    last = len(scenario["seconds"]) - 1
    for row in scenario["seconds"]:
        t = row["t"]
        events = by_second.pop(t, [])
        if t == last:  # events after the load (readmission while settling)
            events += [e for k in sorted(by_second) for e in by_second[k]]
        p50 = "-" if row["p50_ms"] is None else f"{row['p50_ms']:.1f}"
        p99 = "-" if row["p99_ms"] is None else f"{row['p99_ms']:.1f}"
        rows.append(f"{t:>4} {row['ok']:>5} {row['failed']:>6} {p50:>7} {p99:>7}  "
                    + ", ".join(events))
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.failover``: see the module's documentation."""
    parser = argparse.ArgumentParser(prog="python -m bench.failover", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, help="write the scenarios here")
    parser.add_argument("--rate", type=float, default=200.0, help="reads per second")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per service")
    parser.add_argument("--services", default="catalog,exchange")
    parser.add_argument("--settle", type=float, default=30.0,
                        help="seconds to wait for the readmission after the load")
    parser.add_argument("--workers", help="CHARTER_WORKERS of the platform (default 1)")
    parser.add_argument("--work", type=Path,
                        help="keep the platform's var dir and log here (default: a temporary "
                        "directory, removed)")
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.duration < 3:
        parser.error("--rate must be > 0 and --duration ≥ 3")
    services = [s.strip() for s in args.services.split(",") if s.strip()]
    try:
        with contextlib.ExitStack() as stack:
            work = args.work or Path(stack.enter_context(
                tempfile.TemporaryDirectory(prefix="charter-failover-")))
            work.mkdir(parents=True, exist_ok=True)
            doc = run(work, rate=args.rate, duration=args.duration, services=services,
                      settle=args.settle, workers=args.workers)
    except BenchError as exc:
        print(f"bench.failover: {exc}", file=sys.stderr)
        return 2
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    return 0 if all(passed(s) for s in doc["scenarios"]) else 1


if __name__ == "__main__":
    sys.exit(main())
