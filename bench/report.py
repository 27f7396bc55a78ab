"""The run's results: the JSON document under ``bench/results/`` and the Markdown table."""

from __future__ import annotations

import json
import os
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.stats import Result

RESULTS = Path(__file__).resolve().parent / "results"
PRIMARY = 20  # the connection count the headline figures and ratios are taken at


def machine() -> dict[str, Any]:
    """Cores, CPU model, OS and Python of the machine the run happened on."""
    model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cores": os.cpu_count() or 0, "cpu_model": model or "unknown",
            "system": platform.platform(), "python": platform.python_version()}


def _at(results: list[Result], name: str, connections: int = PRIMARY) -> Result:
    for result in results:
        if result.name == name and result.connections == connections:
            return result
    raise KeyError(f"no {name} figure at {connections} connections")


def _ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else 0.0


def summary(results: list[Result], checkout: Result, checkout_v2: Result, tokens: Result,
            extra: dict[str, Any], *, v2_wait: Result | None = None,
            v2_single: Result | None = None) -> dict[str, Any]:
    """The headline figures (at :data:`PRIMARY` connections; ratios from this run only).
    ``checkout_v2.statuses`` counts the final order statuses (``confirmed``/``cancelled``);
    ``checkout_v2`` polls, ``v2_wait`` asks ``Prefer: wait`` at the same concurrency and
    ``v2_single`` is one waiting client (the saga's latency without queueing)."""
    waits = {}
    for key, run in (("checkout_v2_wait", v2_wait), ("checkout_v2_single", v2_single)):
        if run is not None:
            waits.update({f"{key}_rps": round(run.rps, 2), f"{key}_p50_ms": round(run.p50_ms, 1),
                          f"{key}_p99_ms": round(run.p99_ms, 1),
                          f"{key}_count": run.requests, f"{key}_errors": run.errors,
                          f"{key}_cancelled": run.statuses.get("cancelled", 0)})
    governed = _at(results, "governed_read")
    direct = _at(results, "direct_read")
    fastapi = _at(results, "fastapi_jwt")
    flask = _at(results, "plain_flask")
    ceiling = _at(results, "mtls_client_ceiling")
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "connections": PRIMARY,
        "governed_read_rps": round(governed.rps, 1),
        "governed_read_p50_ms": round(governed.p50_ms, 2),
        "governed_read_p99_ms": round(governed.p99_ms, 2),
        "direct_read_rps": round(direct.rps, 1),
        "direct_read_p50_ms": round(direct.p50_ms, 2),
        "direct_read_p99_ms": round(direct.p99_ms, 2),
        "mtls_client_ceiling_rps": round(ceiling.rps, 1),
        # over half the client's own ceiling: the direct figure may be the client's limit
        "direct_read_client_bound": direct.rps > 0.5 * ceiling.rps,
        "fastapi_jwt_rps": round(fastapi.rps, 1),
        "fastapi_jwt_p99_ms": round(fastapi.p99_ms, 2),
        "ratio_to_fastapi": _ratio(governed.rps, fastapi.rps),
        "direct_ratio_to_fastapi": _ratio(direct.rps, fastapi.rps),
        "plain_flask_rps": round(flask.rps, 1),
        "plain_flask_p99_ms": round(flask.p99_ms, 2),
        "ratio_to_plain_flask": _ratio(governed.rps, flask.rps),
        "checkouts_per_s": round(checkout.rps, 2),
        "checkout_p50_ms": round(checkout.p50_ms, 1),
        "checkout_p99_ms": round(checkout.p99_ms, 1),
        "checkout_count": checkout.requests,
        "checkout_errors": checkout.errors,
        "checkout_v2_rps": round(checkout_v2.rps, 2),
        "checkout_v2_p50_ms": round(checkout_v2.p50_ms, 1),
        "checkout_v2_p99_ms": round(checkout_v2.p99_ms, 1),
        "checkout_v2_count": checkout_v2.requests,
        "checkout_v2_errors": checkout_v2.errors,
        "checkout_v2_cancelled": checkout_v2.statuses.get("cancelled", 0),
        **waits,
        "token_issuance_rps": round(tokens.rps, 1),
        "token_issuance_p99_ms": round(tokens.p99_ms, 2),
        "non_2xx_total": sum(r.non_2xx for r in [*results, tokens]),
        **extra,
        "runs": [r.as_dict() for r in [*results, checkout,
                                        *(r for r in (v2_wait, v2_single) if r is not None),
                                        checkout_v2, tokens]],
    }


LABELS = {
    "governed_read": "Charter governed read, through the gateway (JWT ×2, mTLS inside)",
    "direct_read": "Charter catalog directly, mTLS (asyncio client)",
    "mtls_client_ceiling": "mTLS client ceiling (trivial ASGI endpoint)",
    "fastapi_jwt": "peer: FastAPI + PyJWT + pydantic, uvicorn",
    "plain_flask": "peer: plain Flask, gunicorn 2 × 4 threads, no auth",
    "checkout": "checkout: order → payment → confirm, as alice (checkouts/s)",
    "checkout_v2": "checkout v2: POST → poll until confirmed/cancelled, as alice (checkouts/s)",
    "checkout_v2_wait": "checkout v2: POST with Prefer: wait → final status, as alice "
                        "(checkouts/s)",
    "token_issuance": "token issuance, client credentials at auth",
}


def table(doc: dict[str, Any]) -> str:
    """The run as a Markdown table, with the ratios underneath."""
    lines = ["| figure | conns | req/s | p50 ms | p99 ms | non-2xx | errors |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for run in doc["runs"]:
        lines.append(f"| {LABELS.get(run['name'], run['name'])} | {run['connections']} | "
                     f"{run['rps']:,.1f} | {run['p50_ms']:.1f} | {run['p99_ms']:.1f} | "
                     f"{run['non_2xx']} | {run['errors']} |")
    m = doc["machine"]
    lines += ["",
              f"At {doc['connections']} connections: governed read = "
              f"**{doc['ratio_to_fastapi']:.2f} ×** FastAPI peer, "
              f"**{doc['ratio_to_plain_flask']:.2f} ×** plain Flask; direct hop = "
              f"{doc['direct_ratio_to_fastapi']:.2f} × FastAPI peer. "
              f"Catalog and FastAPI peer workers: {doc['catalog_workers']}.",
              f"Checkout v2 (POST → final status, polled every "
              f"{doc.get('checkout_v2_poll_ms', '?')} ms): {doc['checkout_v2_count']} "
              f"finished, **{doc['checkout_v2_cancelled']} cancelled**, "
              f"{doc['checkout_v2_errors']} errors; p99 **{doc['checkout_v2_p99_ms']:,.1f} ms**"
              " (target ≤ 150 ms, floor ≤ 2 s)."
              + (f" With `Prefer: wait`: p99 **{doc['checkout_v2_wait_p99_ms']:,.1f} ms** at "
                 f"{doc['connections']} clients, {doc['checkout_v2_single_p99_ms']:,.1f} ms for "
                 "one client alone." if "checkout_v2_wait_p99_ms" in doc else ""),
              f"{doc['date']} · {m['cores']} cores · {m['cpu_model']} · "
              f"{'quick' if doc['quick'] else 'full'} run, {doc['seconds_per_figure']} s "
              "per figure"]
    return "\n".join(lines)


def write(doc: dict[str, Any], directory: Path = RESULTS) -> tuple[Path, Path]:
    """``<UTC timestamp>.json`` and ``.md`` in ``directory``; their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    json_path = directory / f"{stamp}.json"
    md_path = directory / f"{stamp}.md"
    json_path.write_text(json.dumps(doc, indent=2) + "\n")
    md_path.write_text(table(doc) + "\n")
    return json_path, md_path
