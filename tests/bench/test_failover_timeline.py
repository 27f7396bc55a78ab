"""The failover harness's bookkeeping without a platform: per-second timeline, the gateway's
healthy gauge read from ``/metrics`` text, the table and the pass rule
(``bench/failover.py``; the run itself is ``tests/e2e/test_failover.py``)."""

from __future__ import annotations

from bench.failover import Sample, healthy, passed, render, timeline

METRICS = """\
# HELP charter_gateway_upstream_healthy 1 while the instance is in rotation
# TYPE charter_gateway_upstream_healthy gauge
charter_gateway_upstream_healthy{instance="127.0.0.1:8101",service="gateway",upstream="catalog"} 1.0
charter_gateway_upstream_healthy{instance="127.0.0.1:8111",service="gateway",upstream="catalog"} 0.0
charter_gateway_upstream_healthy{instance="127.0.0.1:8111",service="gateway",upstream="cart"} 1.0
"""


def test_healthy_reads_the_instance_of_the_upstream() -> None:
    assert healthy(METRICS, "catalog", "127.0.0.1:8101") == 1.0
    assert healthy(METRICS, "catalog", "127.0.0.1:8111") == 0.0
    assert healthy(METRICS, "cart", "127.0.0.1:8111") == 1.0
    assert healthy(METRICS, "exchange", "127.0.0.1:8105") is None
    assert healthy("", "catalog", "127.0.0.1:8101") is None


def test_timeline_bins_by_scheduled_second_with_percentiles_of_ok_answers() -> None:
    samples = [Sample(0.1 * i, 0.001 * (i + 1), True) for i in range(10)]  # second 0
    samples += [Sample(1.5, 0.5, False, "502"), Sample(1.6, 0.004, True)]
    seconds = timeline(samples, 3)
    assert seconds[0] == {"t": 0, "ok": 10, "failed": 0, "p50_ms": 5.0, "p99_ms": 10.0}
    assert seconds[1] == {"t": 1, "ok": 1, "failed": 1, "p50_ms": 4.0, "p99_ms": 4.0}
    assert seconds[2] == {"t": 2, "ok": 0, "failed": 0, "p50_ms": None, "p99_ms": None}


def test_render_and_pass_rule() -> None:
    scenario = {"service": "catalog", "rate": 200, "duration_s": 3, "total": 11, "failed": 0,
                "seconds": timeline([Sample(0.1, 0.002, True)], 3),
                "events": [{"t": 1.02, "what": "kill -9 catalog#2"},
                           {"t": 1.4, "what": "ejected catalog#2"},
                           {"t": 4.5, "what": "readmitted catalog#2"}],
                "ejected_after_s": 0.38, "readmitted_after_restart_s": 1.1}
    table = render(scenario).splitlines()
    assert "0 failed; ejected 0.38 s after the kill" in table[1]
    assert table[4].endswith("kill -9 catalog#2 (1.02), ejected catalog#2 (1.40)")
    assert table[5].endswith("readmitted catalog#2 (4.50)")  # after the load: last row
    assert passed(scenario)
    assert not passed({**scenario, "failed": 1})
    assert not passed({**scenario, "readmitted_after_restart_s": None})
