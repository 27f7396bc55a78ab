"""The fault-tolerance report's renderer (``bench/fault_report``), from small sample documents
of each producer's shape: the files are written, the summary table carries the right
numbers, the plots are PNGs with the kill and restart moments where the events say, and a
producer without data shows as ``not run: <reason>``. Nothing is run; also the chaos run's
``--json`` document."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from matplotlib.patches import Rectangle
from matplotlib.text import Annotation

from bench.fault_report import plots, render, sources, summary
from bench.fault_report.__main__ import main
from bench.fault_report.collect import Producer, collect, latest_bench_result, run_one
from tests.chaos.chaos import ChaosConfig, ChaosReport, Checkout, Invariant, as_json

PNG = b"\x89PNG\r\n\x1a\n"


def failover_scenario(service: str, failed: int, kill: float) -> dict[str, Any]:
    seconds: list[dict[str, Any]] = [
        {"t": t, "ok": 200 - (failed if t == int(kill) else 0),
         "failed": failed if t == int(kill) else 0, "p50_ms": 3.0,
         "p99_ms": 40.0 if t == int(kill) else 9.0} for t in range(20)]
    seconds[-1].update(ok=0, p50_ms=None, p99_ms=None)  # a second without an answer
    seconds[-2]["ok"] += 200
    return {"service": service, "rate": 200.0, "duration_s": 20.0,
            "total": sum(s["ok"] + s["failed"] for s in seconds), "failed": failed,
            "seconds": seconds,
            "events": [{"t": kill, "what": f"kill -9 {service}#2"},
                       {"t": kill + 0.38, "what": f"ejected {service}#2"},
                       {"t": kill + 1.5, "what": f"restarted {service}#2"},
                       {"t": kill + 2.6, "what": f"readmitted {service}#2"}],
            "ejected_after_s": 0.38, "readmitted_after_restart_s": 1.1}


SAMPLES: dict[str, dict[str, Any]] = {
    "failover": {"scenarios": [failover_scenario("catalog", 0, 7.02),
                               failover_scenario("exchange", 3, 6.5)]},
    "chaos": {"n": 30, "concurrency": 5, "broker": "embedded", "faults": True, "ok": True,
              "invariants": [{"name": "every order terminal (settled)", "expected": "28 of 28",
                              "actual": "28 of 28", "ok": True},
                             {"name": "reservations still held", "expected": "0",
                              "actual": "0", "ok": True}],
              "kills": [{"t": 3.5, "service": "payments", "pid": 11},
                        {"t": 6.25, "service": "orders", "pid": 12}],
              "restarts": {"payments": 1, "orders": 1},
              "statuses": {"confirmed": 25, "cancelled:payment_declined": 3},
              "checkouts": {"accepted": 28, "refused": 1, "gave_up": 1}, "attempts": 40,
              "seconds": [{"t": 0, "accepted": 10, "refused": 1, "gave_up": 0},
                          {"t": 1, "accepted": 18, "refused": 0, "gave_up": 1}],
              "load_ended_s": 2.0, "settle_started_s": 4.0, "settled_after_s": 3.5},
    "bench": {"date": "2026-12-06T11:00:00+00:00", "quick": True,
              "machine": {"cores": 2, "cpu_model": "test cpu"},
              "runs": [{"name": "governed_read", "connections": 20, "requests": 5000,
                        "seconds": 2.0, "rps": 2500.0, "p50_ms": 6.0, "p99_ms": 21.5,
                        "non_2xx": 0, "errors": 0, "statuses": {}},
                       {"name": "checkout_v2_wait", "connections": 20, "requests": 40,
                        "seconds": 2.0, "rps": 20.0, "p50_ms": 80.0, "p99_ms": 1788.0,
                        "non_2xx": 0, "errors": 0, "statuses": {}},
                       {"name": "checkout_v2_wait", "connections": 1, "requests": 10,
                        "seconds": 1.0, "rps": 10.0, "p50_ms": 82.0, "p99_ms": 99.0,
                        "non_2xx": 0, "errors": 0, "statuses": {}},
                       {"name": "checkout_v2", "connections": 20, "requests": 20,
                        "seconds": 2.0, "rps": 10.0, "p50_ms": 90.0, "p99_ms": 140.2,
                        "non_2xx": 0, "errors": 1, "statuses": {}}]},
    "replication": {"samples": [{"t": 0.1, "lag_ms": 3.2}, {"t": 0.6, "lag_ms": 12.5},
                                {"t": 1.1, "lag_ms": 4.0}],
                    "max_lag_ms": 12.5, "p50_lag_ms": 4.0},
    "restore": {"services": [{"service": "orders", "kind": "sqlite", "seconds": 0.12,
                              "bytes": 40960},
                             {"service": "catalog", "kind": "sqlite", "seconds": 0.08,
                              "bytes": 20480}],
                "total_seconds": 0.25, "rto_target_s": 900, "backup_seconds": 0.4,
                "backup_bytes": 61440, "orders_at_backup": 3, "orders_after_restore": 3,
                "verified": True},
}


def write_data(directory: Path, names: list[str] | None = None) -> Path:
    data = directory / "data"
    data.mkdir(parents=True)
    for name in names if names is not None else list(SAMPLES):
        sources.data_file(data, name).write_text(json.dumps(SAMPLES[name]))
    return data


def summary_lines(markdown: str) -> dict[str, list[str]]:
    """scenario → its cells, from the first table of the page."""
    table = markdown.split("\n\n")[1]
    rows = [line.strip("|").split(" | ") for line in table.splitlines()[2:]]
    return {cells[0].strip(): [c.strip() for c in cells[1:]] for cells in rows}


def test_the_report_renders_every_part_with_the_right_numbers(tmp_path: Path) -> None:
    data = write_data(tmp_path)
    done = render.render(sources.load(data, "2026-12-06"), tmp_path)
    text = done.markdown.read_text()
    assert text.startswith("# Fault-tolerance report 2026-12-06\n")
    assert "not run" not in text
    rows = summary_lines(text)
    assert rows["failover catalog (200 req/s, 20 s)"] == [
        "4,000", "0", "0.38 s", "1.10 s", "40.0", "ok"]
    assert rows["failover exchange (200 req/s, 20 s)"][:2] == ["4,000", "3"]
    assert rows["failover exchange (200 req/s, 20 s)"][-1] == "FAILED"
    assert rows["chaos (2 kills, embedded broker)"] == [
        "30", "1", "–", "–", "–", "2/2 invariants hold; settled in 3.5 s"]
    assert rows["bench governed read @20 (quick)"] == [
        "5,000", "0", "–", "–", "21.5", "2,500 req/s"]
    assert rows["bench checkout v2 @20 (quick)"][1] == "1"
    assert rows["bench checkout v2 waiting @20 (quick)"] == [
        "40", "0", "–", "–", "1,788.0", "20 req/s"]
    assert rows["replication lag"][-1] == "max 12.5 ms, p50 4 ms"
    assert rows["restore drill (2 databases)"][-1] == (
        "0.250 s of RTO 900 s ok; 3/3 orders back")
    assert {p.name for p in done.images} == {
        "failover-catalog.png", "failover-exchange.png", "chaos.png", "bench.png",
        "replication.png", "restore.png"}
    for image in done.images:
        assert image.read_bytes().startswith(PNG)
        assert f"]({image.name})" in text
    page = done.html.read_text()
    assert page.count('src="data:image/png;base64,iVBORw0KGgo') == len(done.images)
    assert "<table>" in page and "<td>failover catalog (200 req/s, 20 s)</td>" in page


def test_errors_per_phase_follow_the_kill_and_the_readmission() -> None:
    phases = summary.failover_phases(failover_scenario("exchange", 3, 6.5))
    assert [(p.name, p.start, p.end, p.ok, p.failed) for p in phases] == [
        ("before the kill", 0.0, 6.5, 1200, 0),
        ("instance out", 6.5, 9.1, 597, 3),   # seconds 6, 7, 8 (their middles)
        ("after re-admission", 9.1, 20, 2200, 0)]
    late = {**failover_scenario("catalog", 0, 7.0), "duration_s": 9.0}  # back after the end
    assert [(p.start, p.end) for p in summary.failover_phases(late)][-1] == (9.6, 9.6)


def vertical_lines(fig: Any) -> dict[int, list[float]]:
    """axis index → x of its vertical lines (axvline: two equal x in data coordinates)."""
    found: dict[int, list[float]] = {}
    for index, ax in enumerate(fig.axes):
        for line in ax.get_lines():
            xs = list(line.get_xdata())
            if len(xs) == 2 and xs[0] == xs[1]:
                found.setdefault(index, []).append(float(xs[0]))
    return found


def test_kill_and_restart_moments_are_marked_at_the_event_times() -> None:
    scenario = failover_scenario("catalog", 0, 7.02)
    fig = plots.failover(scenario)
    times = [e["t"] for e in scenario["events"]]
    assert vertical_lines(fig) == {0: times, 1: times}
    labels = {t.get_text(): t.xy[0] for t in fig.axes[0].texts
              if isinstance(t, Annotation)}
    assert labels == {e["what"]: e["t"] for e in scenario["events"]}
    colours = [line.get_color() for line in fig.axes[0].get_lines()[-4:]]
    assert colours == ["tab:red", "tab:orange", "tab:blue", "tab:green"]
    chaos = plots.chaos(SAMPLES["chaos"])
    assert vertical_lines(chaos) == {0: [3.5, 6.25]}
    whole = [{"t": 2.5, "service": "orders", "pid": 1}, {"t": 2.5, "service": "orders", "pid": 2}]
    assert plots.kill_events(whole) == [{"t": 2.5, "what": "kill -9 orders ×2"}]


def test_restore_is_drawn_against_the_rto() -> None:
    fig = plots.restore(SAMPLES["restore"])
    assert vertical_lines(fig) == {0: [900.0]}
    assert fig.axes[0].get_xscale() == "log"  # 900 s dwarfs 0.25 s
    widths = [bar.get_width() for bar in fig.axes[0].patches if isinstance(bar, Rectangle)]
    assert widths == [0.12, 0.08, 0.25]


def test_a_missing_or_broken_producer_renders_as_not_run(tmp_path: Path) -> None:
    data = write_data(tmp_path, ["chaos"])
    sources.data_file(data, "bench").write_text("{not json")
    sources.data_file(data, "restore").write_text(json.dumps({"services": "?"}))
    sources.write_runs(data, {"failover": sources.Run(
        reason="bench/failover.py is not there (module bench.failover not found)")})
    done = render.render(sources.load(data), tmp_path)
    text = done.markdown.read_text()
    rows = summary_lines(text)
    assert rows["failover"][-1] == ("not run: bench/failover.py is not there "
                                    "(module bench.failover not found)")
    assert rows["replication"][-1] == "not run: no replication.json"
    assert rows["bench"][-1].startswith("not run: bench.json is not JSON")
    assert rows["restore"][-1].startswith("not run: unexpected data")
    assert "## Restore drill\n\nnot run: unexpected data" in text
    assert [p.name for p in done.images] == ["chaos.png"]
    assert done.html.exists()


def test_from_data_re_renders_without_running_anything(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    data = write_data(tmp_path / "2026-12-06", ["replication"])
    assert main(["--from-data", str(data)]) == 0
    assert (tmp_path / "2026-12-06" / "index.html").exists()
    assert "# Fault-tolerance report 2026-12-06" in (
        tmp_path / "2026-12-06" / "index.md").read_text()
    assert "index.html" in capsys.readouterr().out


def test_the_newest_benchmark_result_is_taken(tmp_path: Path) -> None:
    assert latest_bench_result(tmp_path) is None
    for stamp in ("20261206T100000Z", "20261206T110000Z", "20261206T090000Z"):
        (tmp_path / f"{stamp}.json").write_text("{}")
    (tmp_path / "20261206T120000Z.md").write_text("")
    assert latest_bench_result(tmp_path) == tmp_path / "20261206T110000Z.json"


def test_skipped_producers_leave_no_stale_data_and_say_why(tmp_path: Path) -> None:
    data = write_data(tmp_path, ["failover"])
    runs = collect(data, quick=True, skip=frozenset(sources.PRODUCERS), out=lambda _: None)
    assert not sources.data_file(data, "failover").exists()
    assert sources.read_runs(data) == runs
    assert {r.reason for r in runs.values()} == {"skipped (--skip)"}
    assert sources.load(data).missing("failover") == "skipped (--skip)"


def test_a_failing_producer_is_recorded_with_its_last_words(tmp_path: Path) -> None:
    seen: list[str] = []
    run = run_one(Producer("chaos", "tests.chaos.chaos", ("--n", "0"), timeout=60),
                  tmp_path, seen.append)
    assert run.exit_code == 2
    assert run.reason is not None and run.reason.startswith("exit status 2: ")
    assert "--n and --concurrency must be at least 1" in run.reason
    assert "--n and --concurrency" in (tmp_path / "chaos.log").read_text()
    assert any(line.startswith("  chaos| ") for line in seen)


def test_the_chaos_run_as_json() -> None:
    report = ChaosReport(
        invariants=[Invariant("reservations still held", "0", "0", True)],
        checkouts=[Checkout(0, "good", "k0", "o0", finished=100.4),
                   Checkout(1, "declined", "k1", "o1", finished=101.9),
                   Checkout(2, "too_many", "k2", refused="422 …", finished=101.1),
                   Checkout(3, "good", "k3", refused="gave up after 9 attempts (last: 503)",
                            finished=104.0)],
        kills=[(1.234, "orders", 42)], restarts={"orders": 1},
        started=100.0, load_ended=104.0, settle_started=106.0, settled_after=2.345)
    doc = as_json(report, ChaosConfig(n=4, concurrency=2))
    assert doc["ok"] is True and doc["broker"] == "embedded"
    assert doc["invariants"] == [{"name": "reservations still held", "expected": "0",
                                  "actual": "0", "ok": True}]
    assert doc["kills"] == [{"t": 1.23, "service": "orders", "pid": 42}]
    assert doc["checkouts"] == {"accepted": 2, "refused": 1, "gave_up": 1}
    assert doc["seconds"] == [{"t": 0, "accepted": 1, "refused": 0, "gave_up": 0},
                              {"t": 1, "accepted": 1, "refused": 1, "gave_up": 0},
                              {"t": 2, "accepted": 0, "refused": 0, "gave_up": 0},
                              {"t": 3, "accepted": 0, "refused": 0, "gave_up": 0},
                              {"t": 4, "accepted": 0, "refused": 0, "gave_up": 1}]
    assert (doc["load_ended_s"], doc["settle_started_s"], doc["settled_after_s"]) == (
        4.0, 6.0, 2.35)
