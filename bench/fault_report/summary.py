"""The numbers of the report, from the producers' documents (pure): the summary rows and
the failover's error counts per phase (before the kill, while an instance is out, after
it is back)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.fault_report.sources import Inputs

DASH = "–"
HEADLINE_CONNECTIONS = 20  # the benchmark's headline figures are taken at 20 connections


@dataclass(frozen=True)
class Row:
    """One line of the summary table."""

    scenario: str
    requests: str = DASH
    failed: str = DASH
    ejected_after: str = DASH
    readmitted_after: str = DASH
    p99_ms: str = DASH
    result: str = DASH


@dataclass(frozen=True)
class Phase:
    """Requests answered in one phase of a failover scenario."""

    name: str
    start: float
    end: float
    ok: int
    failed: int


def seconds(value: float | None) -> str:
    """``0.38 s`` (``–`` when unknown)."""
    return DASH if value is None else f"{value:.2f} s"


def number(value: float | None, digits: int = 1) -> str:
    """A figure with thousands separators (``–`` when unknown)."""
    if value is None:
        return DASH
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.{digits}f}"


def milliseconds(value: float | None) -> str:
    """A latency with one decimal (``–`` when unknown)."""
    return DASH if value is None else f"{float(value):,.1f}"


def event_time(scenario: dict[str, Any], verb: str) -> float | None:
    """When the first event whose description starts with ``verb`` happened."""
    for event in scenario.get("events", []):
        if str(event["what"]).lower().startswith(verb):
            return float(event["t"])
    return None


def failover_phases(scenario: dict[str, Any]) -> list[Phase]:
    """Requests ok and failed before the kill, from the kill until the instance is
    re-admitted (or restarted, or the end), and after that."""
    rows = scenario.get("seconds", [])
    end = float(scenario.get("duration_s") or (max((r["t"] for r in rows), default=0) + 1))
    kill = event_time(scenario, "kill")
    back = event_time(scenario, "readmitted") or event_time(scenario, "restarted")
    if kill is None:
        bounds = [("whole run", 0.0, end)]
    else:
        back = end if back is None or back < kill else back
        end = max(end, back)  # re-admitted after the load ended
        bounds = [("before the kill", 0.0, kill), ("instance out", kill, back),
                  ("after re-admission", back, end)]
    phases = []
    for index, (name, start, stop) in enumerate(bounds):
        # a second belongs to the phase its middle falls in (the first and last are open)
        low = float("-inf") if index == 0 else start
        high = float("inf") if index == len(bounds) - 1 else stop
        inside = [r for r in rows if low <= float(r["t"]) + 0.5 < high]
        phases.append(Phase(name, start, stop, sum(int(r["ok"]) for r in inside),
                            sum(int(r["failed"]) for r in inside)))
    return phases


def worst_p99(scenario: dict[str, Any]) -> float | None:
    """The highest per-second p99 of a failover scenario."""
    values = [float(r["p99_ms"]) for r in scenario.get("seconds", [])
              if r.get("p99_ms") is not None]
    return max(values) if values else None


def failover_rows(doc: dict[str, Any]) -> list[Row]:
    """One row per failover scenario."""
    rows = []
    for s in doc["scenarios"]:
        failed = int(s["failed"])
        rows.append(Row(
            scenario=(f"failover {s['service']} ({number(s['rate'])} req/s, "
                      f"{number(s['duration_s'])} s)"),
            requests=number(s["total"]), failed=number(failed),
            ejected_after=seconds(s.get("ejected_after_s")),
            readmitted_after=seconds(s.get("readmitted_after_restart_s")),
            p99_ms=milliseconds(worst_p99(s)),
            result="ok" if failed == 0 else "FAILED"))
    return rows


def chaos_row(doc: dict[str, Any]) -> Row:
    """The chaos run: checkouts, those given up, the invariants."""
    invariants = doc["invariants"]
    holding = sum(1 for i in invariants if i["ok"])
    verdict = (f"{holding}/{len(invariants)} invariants hold" if doc["ok"] else
               f"{len(invariants) - holding} of {len(invariants)} invariants FAIL")
    settled = doc.get("settled_after_s")
    return Row(
        scenario=f"chaos ({len(doc['kills'])} kills, {doc['broker']} broker)",
        requests=number(doc["n"]), failed=number(doc["checkouts"]["gave_up"]),
        result=verdict + (f"; settled in {settled:.1f} s" if settled is not None
                          else "; never settled"))


def bench_run(doc: dict[str, Any], name: str,
              connections: int = HEADLINE_CONNECTIONS) -> dict[str, Any] | None:
    """The benchmark figure ``name`` at ``connections``."""
    for run in doc.get("runs", []):
        if run["name"] == name and run["connections"] == connections:
            found: dict[str, Any] = run
            return found
    return None


def bench_rows(doc: dict[str, Any]) -> list[Row]:
    """The governed read and the v2 checkout (a waiting client, ``Prefer: wait``, and a
    polling one) at the headline concurrency."""
    rows = []
    for name, label in (("governed_read", "governed read"),
                        ("checkout_v2_wait", "checkout v2 waiting"),
                        ("checkout_v2", "checkout v2")):
        run = bench_run(doc, name)
        if run is None:
            continue
        failed = int(run["non_2xx"]) + int(run["errors"])
        rows.append(Row(
            scenario=f"bench {label} @{run['connections']}{' (quick)' if doc.get('quick') else ''}",
            requests=number(run["requests"]), failed=number(failed),
            p99_ms=milliseconds(run["p99_ms"]),
            result=f"{number(run['rps'])} req/s" + ("" if failed == 0 else "; errors")))
    return rows


def replication_row(doc: dict[str, Any]) -> Row:
    """The lag samples of the catalog's standby."""
    return Row(scenario="replication lag", requests=number(len(doc["samples"])),
               result=f"max {number(doc['max_lag_ms'])} ms, p50 {number(doc['p50_lag_ms'])} ms")


def restore_row(doc: dict[str, Any]) -> Row:
    """The restore drill's total against the RTO."""
    total, target = float(doc["total_seconds"]), doc.get("rto_target_s")
    took = f"{total:.3f} s" if total < 1 else f"{total:.2f} s"
    verdict = (took if target is None else
               f"{took} of RTO {number(float(target))} s "
               + ("ok" if total <= float(target) else "OVER"))
    if doc.get("orders_after_restore") is not None:
        verdict += (f"; {doc['orders_after_restore']}/{doc.get('orders_at_backup')} orders "
                    "back" + ("" if doc.get("verified", True) else " MISMATCH"))
    return Row(scenario=f"restore drill ({len(doc['services'])} databases)", result=verdict)


SECTION_ROWS = {
    "failover": failover_rows,
    "chaos": lambda d: [chaos_row(d)],
    "bench": bench_rows,
    "replication": lambda d: [replication_row(d)],
    "restore": lambda d: [restore_row(d)],
}


def rows(inputs: Inputs) -> list[Row]:
    """Every summary row, in producer order; a missing producer gives ``not run: …``."""
    found: list[Row] = []
    for name, make in SECTION_ROWS.items():
        doc = inputs.doc(name)
        if doc is None:
            found.append(Row(scenario=name, result=f"not run: {inputs.missing(name)}"))
            continue
        try:
            found.extend(make(doc))
        except (KeyError, TypeError, ValueError) as exc:
            found.append(Row(scenario=name, result=f"not run: unexpected data ({exc!r})"))
    return found
