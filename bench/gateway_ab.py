"""A/B of two gateway builds on one platform: the governed read through each, interleaved.

``python -m bench.gateway_ab [--ref HEAD] [--rounds 8] [--seconds 8]`` starts one
``charter up`` (:mod:`bench.platform`), then three one-worker gateways in front of the same
services: ``ref`` (``services/gateway`` as committed at ``--ref``, copied out of git and
served as the package ``gateway_ref``), ``tree`` (the working tree, default settings: what
``make bench`` measures) and ``tree_browser`` (CORS on for one origin, every request with
that ``Origin`` and ``Accept-Encoding: gzip, br``). Each round runs ``wrk -t1 -c20`` on
each, the order reversed every other round, and reads the gateway process's CPU from
``/proc``. Prints per-round figures and the medians of the per-round ratios to ``ref``
(throughput, CPU per request): on a shared machine the ratios of neighbouring runs are
what can be compared (docs/performance.md, *Gateway: CORS, compression, header limit*).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench import wrk
from bench.__main__ import PRODUCT_ID, client_credentials
from bench.platform import ROOT, BenchError, free_ports, running

ORIGIN = "https://shop.example"
#: name → (ASGI factory, extra environment, extra request headers)
VARIANTS: dict[str, tuple[str, dict[str, str], dict[str, str]]] = {
    "ref": ("gateway_ref.app:create_asgi", {}, {}),
    "tree": ("services.gateway.app:create_asgi", {}, {}),
    "tree_browser": ("services.gateway.app:create_asgi", {"GATEWAY_CORS_ORIGINS": ORIGIN},
                     {"Origin": ORIGIN, "Accept-Encoding": "gzip, br"}),
}


def extract(ref: str, target: Path) -> Path:
    """``services/gateway`` at git ``ref`` as the package ``target/gateway_ref``."""
    package = target / "gateway_ref"
    package.mkdir(parents=True, exist_ok=True)
    names = subprocess.run(["git", "ls-tree", "--name-only", ref, "services/gateway/"],
                           cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for name in names:
        if name.endswith(".py"):
            source = subprocess.run(["git", "show", f"{ref}:{name}"], cwd=ROOT,
                                    capture_output=True, check=True).stdout
            (package / Path(name).name).write_bytes(source)
    if not (package / "app.py").is_file():
        raise BenchError(f"no services/gateway/app.py at {ref}")
    return package


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _start(env: dict[str, str], name: str, port: int, pythonpath: str,
           log: Path) -> subprocess.Popen[bytes]:
    factory, extra, _ = VARIANTS[name]
    child = {**env, "CHARTER_SERVICE": "gateway", "CHARTER_WORKERS": "1", **extra,
             "PYTHONPATH": pythonpath}
    argv = [sys.executable, "-m", "uvicorn", "--factory", factory, "--host", "127.0.0.1",
            "--port", str(port), "--no-access-log", "--log-level", "warning",
            "--timeout-keep-alive", "15", "--no-proxy-headers"]
    return subprocess.Popen(argv, env=child, cwd=ROOT, stdout=log.open("wb"),
                            stderr=subprocess.STDOUT)


def _wait(url: str, headers: dict[str, str], log: Path, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, headers=headers, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise BenchError(f"{url} did not answer 200:\n{log.read_text(errors='replace')[-2000:]}")


def measure(ref: str, rounds: int, seconds: float) -> dict[str, dict[str, float]]:
    """Run the A/B; the medians per variant (req/s, CPU µs per request, both ratios)."""
    work = Path(tempfile.mkdtemp(prefix="bench-gateway-ab-"))
    extract(ref, work / "ref")
    rps: dict[str, list[float]] = {n: [] for n in VARIANTS}
    cpu: dict[str, list[float]] = {n: [] for n in VARIANTS}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    with running(work) as platform:
        auth = {"Authorization": f"Bearer {client_credentials(platform)}"}
        ports = dict(zip(VARIANTS, free_ports(len(VARIANTS)), strict=True))
        try:
            for name, port in ports.items():
                path = f"{work / 'ref'}:{ROOT}" if name == "ref" else str(ROOT)
                procs[name] = _start(platform.env, name, port, path, work / f"{name}.log")
            urls = {n: f"http://127.0.0.1:{p}/catalog/v1/products/{PRODUCT_ID}"
                    for n, p in ports.items()}
            for name, url in urls.items():
                _wait(url, auth, work / f"{name}.log")
                wrk.run(name, url, 20, 3, headers={**auth, **VARIANTS[name][2]})  # warm-up
            for i in range(rounds):
                for name in (list(VARIANTS) if i % 2 == 0 else list(VARIANTS)[::-1]):
                    before = cpu_seconds(procs[name].pid)
                    res = wrk.run(name, urls[name], 20, seconds,
                                  headers={**auth, **VARIANTS[name][2]})
                    if res.non_2xx or res.errors or not res.requests:
                        raise BenchError(f"{name}: statuses {res.statuses}, {res.errors} errors")
                    cpu[name].append((cpu_seconds(procs[name].pid) - before)
                                     / res.requests * 1e6)
                    rps[name].append(res.rps)
                    print(f"round {i} {name:<13} {res.rps:8.1f} req/s  p99 {res.p99_ms:6.1f} ms"
                          f"  gateway CPU {cpu[name][-1]:5.0f} µs/request", flush=True)
        finally:
            for proc in procs.values():
                proc.terminate()
            for proc in procs.values():
                proc.wait(timeout=30)
    summary: dict[str, dict[str, float]] = {}
    for name in VARIANTS:
        summary[name] = {
            "rps_median": statistics.median(rps[name]),
            "rps_ratio_to_ref": statistics.median(
                a / b for a, b in zip(rps[name], rps["ref"], strict=True)),
            "cpu_us_per_request": statistics.median(cpu[name]),
            "cpu_ratio_to_ref": statistics.median(
                a / b for a, b in zip(cpu[name], cpu["ref"], strict=True)),
        }
    return summary


def main(argv: list[str] | None = None) -> int:
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(prog="python -m bench.gateway_ab")
    parser.add_argument("--ref", default="HEAD", help="git ref of the 'before' gateway")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args(argv)
    try:
        summary = measure(args.ref, args.rounds, args.seconds)
    except BenchError as exc:
        print(f"bench.gateway_ab: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
