"""What tracing costs the governed read: interleaved runs of one build, ratios only.

``python -m bench.tracing_cost [--rounds 2] [--seconds 10]`` starts a fresh platform
(``bench.platform``) per run, in turn for each configuration, round after round
(A/B/C/A/B/C…: a shared, noisy machine drifts, so neighbours are compared), warms the
governed read up (3 s) and measures it with wrk at 20 connections:

* ``disabled``: ``OTEL_SDK_DISABLED=true``, no context read or continued;
* ``default``: nothing set, what ``charter up`` runs: context propagated, no span kept;
* ``exporting``: ``OTEL_EXPORTER_OTLP_ENDPOINT`` at a sink in this process (it answers
  200 and drops the spans), the default ratio (``tracing.DEFAULT_RATIO``), batch export;
* ``exporting_all``: the same with every trace kept (``OTEL_TRACES_SAMPLER_ARG=1``).

Prints each run and, per configuration, the median ratios to ``disabled`` in the same
round: throughput, and the CPU time the gateway and catalog processes spent per request
(from ``/proc``; steadier than throughput on a machine shared with other work).
``docs/observability.md`` records the figures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from bench import platform as bench_platform
from bench import wrk
from bench.__main__ import PRODUCT_ID, client_credentials
from bench.platform import BenchError


@contextmanager
def otlp_sink() -> Iterator[str]:
    """An OTLP/HTTP endpoint that accepts and drops every export; its base URL."""

    class Sink(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            self.rfile.read(int(self.headers.get("content-length", 0)))
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


HOT = (b"worker\x00gateway\x00", b"worker\x00catalog\x00")
"""The processes of the governed read (``charter.serve worker <component> …``)."""


def cpu_seconds(group: int) -> float:
    """User + system CPU seconds of the gateway and catalog processes of process group
    ``group`` (the platform's: ``bench.platform`` starts it in a session of its own)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue  # gone meanwhile
        if int(stat[2]) == group and any(h in cmdline for h in HOT):
            total += (int(stat[11]) + int(stat[12])) / tick
    return total


def measure(work: Path, env: dict[str, str], seconds: float) -> tuple[float, float]:
    """Requests/s of the governed read at 20 connections on a fresh platform with ``env``,
    and the gateway's + catalog's CPU microseconds per request meanwhile."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # bench.platform.start passes its environment on
    try:
        with bench_platform.running(work) as plat:
            auth = {"Authorization": f"Bearer {client_credentials(plat)}"}
            url = f"{plat.url('gateway')}/catalog/v1/products/{PRODUCT_ID}"
            first = httpx.get(url, headers=auth, timeout=10)
            if first.status_code != 200:
                raise BenchError(f"governed read: {first.status_code} {first.text[:200]}")
            wrk.run("warm-up", url, 20, 3, headers=auth)
            cpu_before = cpu_seconds(plat.proc.pid)
            result = wrk.run("governed_read", url, 20, seconds, headers=auth)
            cpu_us = (cpu_seconds(plat.proc.pid) - cpu_before) / max(result.requests, 1) * 1e6
            if result.non_2xx or result.errors:
                raise BenchError(f"governed read: {result.statuses}, {result.errors} errors")
            print(f"    {result.rps:9,.1f} req/s  p50 {result.p50_ms:6.1f} ms  "
                  f"p99 {result.p99_ms:6.1f} ms  {cpu_us:6.0f} us CPU/request", flush=True)
            return result.rps, cpu_us
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    for var in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "OTEL_SDK_DISABLED", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG"):
        os.environ.pop(var, None)
    with otlp_sink() as sink, tempfile.TemporaryDirectory(prefix="bench-tracing-") as tmp:
        configs = {
            "disabled": {"OTEL_SDK_DISABLED": "true"},
            "default": {},
            "exporting": {"OTEL_EXPORTER_OTLP_ENDPOINT": sink},
            "exporting_all": {"OTEL_EXPORTER_OTLP_ENDPOINT": sink,
                              "OTEL_TRACES_SAMPLER_ARG": "1"},
        }
        rps: dict[str, list[float]] = {name: [] for name in configs}
        cpu: dict[str, list[float]] = {name: [] for name in configs}
        for round_no in range(args.rounds):
            for name, env in configs.items():
                print(f"  round {round_no + 1} {name}", flush=True)
                for attempt in (1, 2):  # a loaded machine may fail a start: once more
                    work = Path(tmp) / f"{name}-{round_no}-{attempt}"
                    work.mkdir()
                    try:
                        rate, cost = measure(work, env, args.seconds)
                        rps[name].append(rate)
                        cpu[name].append(cost)
                        break
                    except BenchError as exc:
                        if attempt == 2:
                            raise
                        print(f"    failed, once more: {str(exc)[:200]}", flush=True)
    for name in configs:
        ratios = [v / b for v, b in zip(rps[name], rps["disabled"], strict=True)]
        costs = [v / b for v, b in zip(cpu[name], cpu["disabled"], strict=True)]
        print(f"{name:<13} median {statistics.median(rps[name]):9,.1f} req/s, "
              f"{statistics.median(cpu[name]):6.0f} us CPU/request; vs disabled in the same "
              f"round: throughput x{statistics.median(ratios):.3f} "
              f"({', '.join(f'{r:.3f}' for r in ratios)}), CPU/request "
              f"x{statistics.median(costs):.3f} ({', '.join(f'{r:.3f}' for r in costs)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
