"""The harness's answer checks: wrk's report parsed with every non-2xx counted, a server
answering errors shows up as such, and the percentile used by the mTLS client."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from typing import Any

import pytest

from bench import wrk
from bench.stats import percentile
from tests.support.databases import skip_or_fail

REPORT = """Running 2s test @ http://127.0.0.1:1/v1/products/1
  1 threads and 20 connections
  Latency Distribution
     50%   53.60ms
     99%  284.30ms
  597 requests in 2.00s, 300.00KB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 5
Requests/sec:    298.40
Transfer/sec:    150.00KB
STATUSES {"200": 590, "503": 5, "302": 2}
P50US 53600
P99US 284300
"""


def test_wrk_report_is_parsed_with_every_non_2xx_and_socket_error() -> None:
    result = wrk.parse("governed_read", 20, REPORT)

    assert result.requests == 597 and result.seconds == 2.0
    assert result.rps == 298.40
    assert (result.p50_ms, result.p99_ms) == (53.6, 284.3)
    assert result.non_2xx == 7  # the 3xx too, which wrk's own line lumps with 2xx-less
    assert result.errors == 3
    assert not result.ok


def test_a_report_without_the_status_counts_is_refused() -> None:
    with pytest.raises(ValueError, match="unexpected wrk output"):
        wrk.parse("x", 1, REPORT.split("STATUSES")[0])


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([], 0.5) == 0.0


async def _unavailable(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 503,
                "headers": [(b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b""})


def test_a_server_answering_503_is_counted_as_non_2xx_by_wrk(
        asgi_server: Callable[..., Any]) -> None:
    if shutil.which("wrk") is None:
        skip_or_fail("wrk is not installed (Debian package `wrk`; make wrk)")
    server = asgi_server(_unavailable)

    result = wrk.run("stub", f"{server.url}/", 2, 1.0)

    assert result.requests > 0
    assert result.non_2xx == result.requests == result.statuses["503"]
    assert not result.ok
