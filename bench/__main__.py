"""``python -m bench [--quick]``: start a platform and the peers, measure, report.

Exit status 0 when every answer was the expected one; 1 (with the reasons) when any
answer was not, or a checkout failed; 2 when the harness could not run at all.
"""

from __future__ import annotations

import argparse
import base64
import sqlite3
import ssl
import sys
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

from bench import checkout, checkout_v2, report, servers, tlsload, wrk
from bench.platform import BenchError, Platform, free_ports, running
from bench.stats import Result

PRODUCT_ID = 1


def client_credentials(platform: Platform) -> str:
    """A demo-cli access token (client credentials at auth)."""
    resp = httpx.post(f"{platform.url('auth')}/oauth/token",
                      data={"grant_type": "client_credentials"},
                      auth=("demo-cli", platform.secret("DEMO_CLI_SECRET")), timeout=10)
    if resp.status_code != 200:
        raise BenchError(f"demo-cli token: {resp.status_code} {resp.text[:300]}")
    token: str = resp.json()["access_token"]
    return token


def alice_token(platform: Platform) -> str:
    """alice's access token (authorization code + PKCE, as the demo signs in)."""
    from charterctl.user_login import user_token

    body = user_token(platform.url("auth"), "alice@example.com",
                      platform.secret("DEMO_ALICE_PASSWORD"),
                      redirect_uri=f"{platform.url('gateway')}/ui/oauth2-redirect.html")
    token: str = body["access_token"]
    return token


def checkout_products(platform: Platform, needed: int) -> list[int]:
    """Active EUR products with stock enough that ``needed`` one-unit checkouts spread
    over them never run one out (at least 4); :class:`BenchError` when there is not."""
    db = sqlite3.connect(f"file:{platform.var_dir / 'catalog.db'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT s.product_id, s.on_hand - s.reserved FROM stock s "
                          "JOIN products p ON p.id = s.product_id WHERE p.active = 1 "
                          "AND p.currency = 'EUR' ORDER BY 2 DESC").fetchall()
    finally:
        db.close()
    chosen: list[int] = []
    for product_id, available in rows:
        chosen.append(int(product_id))
        if len(chosen) * min(available, 50) >= needed and len(chosen) >= 4:
            return chosen
    raise BenchError(f"the catalog has too little stock for {needed} one-unit checkouts "
                     f"spread over its products ({len(rows)} in stock)")


def same_product(name: str, url: str, headers: dict[str, str], expected: dict[str, Any],
                 verify: ssl.SSLContext | bool = True) -> Callable[[], bool]:
    """A probe: ``url`` answers 200 with the catalog's product (same id, sku, name)."""
    def probe() -> bool:
        try:
            resp = httpx.get(url, headers=headers, timeout=5, verify=verify)
        except httpx.HTTPError:
            return False
        if resp.status_code != 200:
            return False
        body = resp.json()
        for key in ("id", "sku", "name", "price"):
            if body.get(key) != expected[key]:
                raise BenchError(f"{name} serves a different product: {body} vs {expected}")
        return True
    return probe


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="20 connections only, a few seconds per figure (CI smoke test)")
    parser.add_argument("--seconds", type=float, help="seconds per figure (default 10; 2 "
                        "with --quick)")
    parser.add_argument("--results", type=Path, default=report.RESULTS,
                        help="where the JSON and Markdown go (default bench/results/)")
    parser.add_argument("--poll-ms", type=float, default=checkout_v2.POLL_INTERVAL * 1000,
                        help="v2 checkout: ms between two reads of a pending order "
                        "(default %(default)g)")
    args = parser.parse_args(argv)
    if args.poll_ms <= 0:
        parser.error("--poll-ms must be positive")
    if wrk.available() is None:
        print("bench: wrk is not installed (Debian package `wrk`; `make wrk`)", file=sys.stderr)
        return 2
    try:
        doc, problems = measure(args.quick, args.seconds, args.poll_ms / 1000)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench: interrupted; everything it started is stopped", file=sys.stderr)
        return 130
    json_path, md_path = report.write(doc, args.results)
    print("\n" + report.table(doc) + "\n")
    print(f"results: {json_path}\n         {md_path}")
    if problems:
        print("\nbench: unexpected answers during the run:\n  " + "\n  ".join(problems),
              file=sys.stderr)
        return 1
    return 0


def measure(quick: bool, seconds: float | None,
            poll_interval: float = checkout_v2.POLL_INTERVAL
            ) -> tuple[dict[str, Any], list[str]]:
    """Start everything, measure every figure, stop everything; the document and problems."""
    levels = [20] if quick else [1, 20, 100]
    seconds = seconds or (2.0 if quick else 10.0)
    warm = 1.0 if quick else 3.0
    checkouts = 20 if quick else 200
    with tempfile.TemporaryDirectory(prefix="charter-bench-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        print("bench: starting the platform (charter --dev up, rate limit off, mTLS on)…",
              flush=True)
        platform = stack.enter_context(running(work))
        try:
            return _measure_on(platform, stack, work, quick, levels, seconds, warm, checkouts,
                               poll_interval)
        except BenchError as exc:  # the platform's own log says why; it goes with tmp
            tail = platform.log.read_text(errors="replace").splitlines()[-40:]
            raise BenchError(f"{exc}\n--- charter up log (last lines) ---\n"
                             + "\n".join(tail)) from exc


def _measure_on(platform: Platform, stack: ExitStack, work: Path, quick: bool,
                levels: list[int], seconds: float, warm: float, checkouts: int,
                poll_interval: float = checkout_v2.POLL_INTERVAL
                ) -> tuple[dict[str, Any], list[str]]:
    """Every figure against a started ``platform`` (servers it starts go on ``stack``)."""
    problems: list[str] = []
    results: list[Result] = []

    def keep(result: Result, warmup: bool = False) -> Result:
        label = f"{result.name} @{result.connections}" + (" (warm-up)" if warmup else "")
        if result.non_2xx or result.errors:
            problems.append(f"{label}: statuses {result.statuses}, {result.errors} errors")
        if result.requests == 0:
            problems.append(f"{label}: no answer at all")
        if not warmup:
            results.append(result)
        print(f"  {label:<34} {result.rps:>9,.1f} req/s  p50 {result.p50_ms:7.1f} ms  "
              f"p99 {result.p99_ms:7.1f} ms  non-2xx {result.non_2xx}", flush=True)
        return result

    token = client_credentials(platform)
    auth_header = {"Authorization": f"Bearer {token}"}
    workers = platform.catalog_workers()
    pki = platform.pki_dir
    gateway_ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    gateway_ctx.load_cert_chain(str(pki / "gateway.pem"), str(pki / "gateway-key.pem"))
    governed_url = f"{platform.url('gateway')}/catalog/v1/products/{PRODUCT_ID}"
    first = httpx.get(governed_url, headers=auth_header, timeout=10)
    if first.status_code != 200:
        raise BenchError(f"governed read: {first.status_code} {first.text[:300]}")
    product = first.json()

    fastapi_port, flask_port, trivial_port = free_ports(3)
    peer_env = {"PEER_DB": str(platform.var_dir / "catalog.db"),
                "PEER_JWKS_URL": f"{platform.url('auth')}/.well-known/jwks.json",
                "PEER_ISSUER": platform.url("auth"), "PEER_AUDIENCE": "charter-api"}
    started = [servers.fastapi_peer(fastapi_port, workers, peer_env,
                                    work / "fastapi.log"),
               servers.flask_peer(flask_port, peer_env, work / "flask.log"),
               servers.trivial(trivial_port, pki, work / "trivial.log")]
    for server in started:
        stack.callback(server.stop)
    fastapi_url = f"http://127.0.0.1:{fastapi_port}/v1/products/{PRODUCT_ID}"
    flask_url = f"http://127.0.0.1:{flask_port}/v1/products/{PRODUCT_ID}"
    direct_url = f"{platform.url('catalog')}/v1/products/{PRODUCT_ID}"
    started[0].wait(same_product("FastAPI peer", fastapi_url, auth_header, product))
    started[1].wait(same_product("Flask peer", flask_url, {}, product))
    started[2].wait(lambda: httpx.get(f"https://127.0.0.1:{trivial_port}/",
                                      verify=gateway_ctx, timeout=5).status_code == 200)
    if not same_product("catalog (direct)", direct_url, auth_header, product,
                        verify=gateway_ctx)():
        raise BenchError("the catalog does not answer the direct read over mTLS")

    def direct(name: str, port: int, path: str, headers: dict[str, str]
               ) -> Callable[[int, float], Result]:
        target = tlsload.Target("127.0.0.1", port, path, headers, pki / "ca.pem",
                                pki / "gateway.pem", pki / "gateway-key.pem")
        return lambda conns, secs: tlsload.run(name, target, conns, secs)

    def plain(name: str, url: str, headers: dict[str, str]
              ) -> Callable[[int, float], Result]:
        return lambda conns, secs: wrk.run(name, url, conns, secs, headers=headers)

    figures = [
        direct("mtls_client_ceiling", trivial_port, "/", {}),
        plain("governed_read", governed_url, auth_header),
        direct("direct_read", platform.port("catalog"), f"/v1/products/{PRODUCT_ID}",
               auth_header),
        plain("fastapi_jwt", fastapi_url, auth_header),
        plain("plain_flask", flask_url, {}),
    ]
    print(f"bench: warm-up ({warm:g} s each at 20 connections)", flush=True)
    for figure in figures:
        keep(figure(20, warm), warmup=True)
    print(f"bench: measuring ({seconds:g} s per figure; connections {levels})", flush=True)
    for conns in levels:
        for figure in figures:
            keep(figure(conns, seconds))

    print(f"bench: {checkouts} checkouts by 20 concurrent users (as alice)…", flush=True)
    alice = alice_token(platform)
    products = checkout_products(platform, checkouts)
    checkout_result, checkout_errors = checkout.run(
        platform.url("gateway"), alice, products, 20, checkouts)
    problems += [f"checkout: {e}" for e in checkout_errors[:10]]
    print(f"  checkout: {checkout_result.rps:.1f}/s p50 {checkout_result.p50_ms:.0f} ms "
          f"p99 {checkout_result.p99_ms:.0f} ms errors {checkout_result.errors}", flush=True)

    def v2_figure(name: str, users: int, total: int, wait: int) -> checkout_v2.V2Run:
        how = (f"POST with Prefer: wait={wait}" if wait else
               f"POST, then poll every {poll_interval * 1000:g} ms until final")
        print(f"bench: {total} v2 checkouts by {users} concurrent client(s) ({how})…",
              flush=True)
        run = checkout_v2.run(platform.url("gateway"), alice,
                              checkout_products(platform, total), users, total,
                              poll_interval=poll_interval, wait=wait, name=name)
        problems.extend(f"{name}: {e}" for e in run.errors[:10])
        if run.cancelled:  # every product chosen has the stock: a cancellation is a failure
            problems.append(f"{name}: {run.cancelled} of {run.result.requests} orders ended "
                            "cancelled although the stock was there")
        if run.result.requests + run.result.errors != total:
            problems.append(f"{name}: {run.result.requests} finished and "
                            f"{run.result.errors} failed of {total}")
        print(f"  {name} @{users}: {run.result.rps:.1f}/s p50 {run.result.p50_ms:.0f} ms "
              f"p99 {run.result.p99_ms:.0f} ms errors {run.result.errors} "
              f"cancelled {run.cancelled}", flush=True)
        return run

    v2_wait = v2_figure("checkout_v2_wait", 20, checkouts, checkout_v2.WAIT)
    v2 = v2_figure("checkout_v2", 20, checkouts, 0)
    v2_single = v2_figure("checkout_v2_wait", 1, max(10, checkouts // 4), checkout_v2.WAIT)

    basic = base64.b64encode(f"demo-cli:{platform.secret('DEMO_CLI_SECRET')}".encode())
    token_headers = {"Authorization": f"Basic {basic.decode()}",
                     "Content-Type": "application/x-www-form-urlencoded"}
    tokens = wrk.run("token_issuance", f"{platform.url('auth')}/oauth/token", 20,
                     seconds, method="POST", headers=token_headers,
                     body="grant_type=client_credentials")
    keep(tokens)
    results.remove(tokens)
    extra = {"catalog_workers": workers, "quick": quick, "seconds_per_figure": seconds,
             "levels": levels, "product_id": PRODUCT_ID,
             "checkout_v2_poll_ms": round(poll_interval * 1000, 3),
             "checkout_v2_timeout_s": checkout_v2.TIMEOUT,
             "load_generators": {"http": "wrk -t1 --latency (Lua status counts)",
                                 "mtls": "bench.tlsload (asyncio+uvloop, 2 processes)"}}
    return report.summary(results, checkout_result, v2.result, tokens, extra,
                          v2_wait=v2_wait.result, v2_single=v2_single.result), problems


if __name__ == "__main__":
    sys.exit(main())
