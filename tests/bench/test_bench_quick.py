"""``make bench-quick`` end to end: the harness starts a platform and the peers, measures
every figure, writes the JSON and the Markdown table, and stops everything.

No timing is asserted (the machine is shared); only that every figure exists, is a positive
number, and that every answer during the run was the expected one (exit status 0).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.databases import skip_or_fail

ROOT = Path(__file__).resolve().parents[2]
POSITIVE = ("governed_read_rps", "governed_read_p50_ms", "governed_read_p99_ms",
            "direct_read_rps", "fastapi_jwt_rps", "ratio_to_fastapi", "plain_flask_rps",
            "ratio_to_plain_flask", "checkout_p99_ms", "mtls_client_ceiling_rps",
            "token_issuance_rps", "checkouts_per_s", "checkout_v2_rps",
            "checkout_v2_p50_ms", "checkout_v2_p99_ms", "checkout_v2_wait_rps",
            "checkout_v2_wait_p99_ms", "checkout_v2_single_rps", "checkout_v2_single_p99_ms")

pytestmark = pytest.mark.e2e


def test_quick_bench_writes_every_figure_and_prints_the_table(tmp_path: Path) -> None:
    if shutil.which("wrk") is None:
        skip_or_fail("wrk is not installed (Debian package `wrk`; make wrk)")
    env = {k: v for k, v in os.environ.items() if k != "CHARTER_VAR_DIR"}
    done = subprocess.run([sys.executable, "-m", "bench", "--quick", "--seconds", "1.5",
                           "--results", str(tmp_path)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    [result] = tmp_path.glob("*.json")
    doc = json.loads(result.read_text())
    for key in POSITIVE:
        assert isinstance(doc[key], int | float) and doc[key] > 0, (key, doc[key])
    assert doc["checkout_errors"] == 0 and doc["non_2xx_total"] == 0
    assert doc["checkout_count"] == 20
    # the v2 checkout: every one of the 20 followed to ``confirmed`` (stock was there)
    assert (doc["checkout_v2_count"], doc["checkout_v2_errors"],
            doc["checkout_v2_cancelled"]) == (20, 0, 0)
    [v2] = [r for r in doc["runs"] if r["name"] == "checkout_v2"]
    assert v2["statuses"] == {"confirmed": 20} and v2["connections"] == 20
    assert doc["checkout_v2_p50_ms"] <= doc["checkout_v2_p99_ms"]
    # Prefer: wait — 20 clients, then one alone; every checkout confirmed
    assert (doc["checkout_v2_wait_count"], doc["checkout_v2_wait_errors"],
            doc["checkout_v2_wait_cancelled"]) == (20, 0, 0)
    assert (doc["checkout_v2_single_count"], doc["checkout_v2_single_errors"]) == (10, 0)
    waits = sorted(r["connections"] for r in doc["runs"] if r["name"] == "checkout_v2_wait")
    assert waits == [1, 20]
    assert doc["machine"]["cores"] > 0 and doc["machine"]["cpu_model"]
    assert doc["date"]
    assert {r["name"] for r in doc["runs"]} >= {"governed_read", "direct_read", "fastapi_jwt",
                                                "plain_flask", "checkout", "checkout_v2",
                                                "token_issuance"}

    table = result.with_suffix(".md").read_text()
    assert table.startswith("| figure |")
    assert table in done.stdout  # the same table printed at the end
    assert "| Charter governed read" in done.stdout
    assert "| checkout v2: POST → poll until confirmed/cancelled" in done.stdout
