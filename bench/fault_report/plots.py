"""The report's figures (matplotlib, Agg backend: no display needed). Each function takes
a producer's document and returns the :class:`~matplotlib.figure.Figure`; the caller saves
it (``save``) — tests read the plotted artists back."""

from __future__ import annotations

import io
from collections import Counter
from typing import Any

import matplotlib

matplotlib.use("Agg")

from matplotlib.axes import Axes  # noqa: E402  (after the backend is chosen)
from matplotlib.figure import Figure  # noqa: E402

DPI = 100
EVENT_COLOURS = {"kill": "tab:red", "ejected": "tab:orange", "restarted": "tab:blue",
                 "readmitted": "tab:green"}
OUTCOME_COLOURS = {"accepted": "tab:green", "refused": "tab:gray", "gave_up": "tab:red"}


def event_colour(what: str) -> str:
    """The colour of an event's marker, by its first word (kill, ejected, …)."""
    first = what.split()[0].lower() if what.split() else ""
    return EVENT_COLOURS.get(first, "tab:purple")


def mark_events(axes: list[Axes], events: list[dict[str, Any]], span: float) -> None:
    """A vertical line at every event on every axis, labelled on the first one; a label
    closer than 3 % of ``span`` (the x range) to the previous one is moved right of it."""
    previous: float | None = None
    shift = 0
    for event in sorted(events, key=lambda e: float(e["t"])):
        t, what = float(event["t"]), str(event["what"])
        for ax in axes:
            ax.axvline(t, color=event_colour(what), linestyle="--", linewidth=1.2)
        crowded = previous is not None and t - previous < 0.03 * max(span, 1e-9)
        shift = shift + 9 if crowded else 0
        previous = t
        axes[0].annotate(what, xy=(t, 1.0), xycoords=("data", "axes fraction"),
                         xytext=(2 + shift, -2), textcoords="offset points", rotation=90,
                         va="top", ha="left", fontsize=7, color=event_colour(what),
                         bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.7,
                               "pad": 1})


def kill_events(kills: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One event per kill moment and service (a whole component's workers die together)."""
    counts = Counter((float(k["t"]), str(k["service"])) for k in kills)
    return [{"t": t, "what": f"kill -9 {service}" + (f" ×{n}" if n > 1 else "")}
            for (t, service), n in counts.items()]


def failover(scenario: dict[str, Any]) -> Figure:
    """Throughput (ok and failed per second) and p50/p99 latency over time, the kill,
    ejection, restart and re-admission marked."""
    fig = Figure(figsize=(9, 5.2), dpi=DPI, layout="tight")
    top, bottom = fig.subplots(2, 1, sharex=True)
    rows = scenario.get("seconds", [])
    t = [float(r["t"]) for r in rows]
    ok = [int(r["ok"]) for r in rows]
    top.step([*t, *(t[-1:] and [t[-1] + 1])], ok + ok[-1:], where="post",
             color="tab:green", label="ok / s")
    top.axhline(float(scenario["rate"]), color="gray", linewidth=0.8, linestyle=":",
                label=f"target {float(scenario['rate']):g} req/s")
    top.set_ylim(0, max([float(scenario["rate"]), *ok]) * 1.35)
    failures = top.twinx()  # failures on their own scale: a handful must show
    failures.bar(t, [int(r["failed"]) for r in rows], width=1.0, align="edge",
                 color="tab:red", alpha=0.7, label="failed / s")
    failures.set_ylim(0, max([5, *(int(r["failed"]) for r in rows)]) * 1.35)
    failures.set_ylabel("failed / s", color="tab:red")
    handles = top.get_legend_handles_labels()
    extra = failures.get_legend_handles_labels()
    top.legend(handles[0] + extra[0], handles[1] + extra[1], loc="lower left", fontsize=7)
    top.set_ylabel("requests / s")
    mid = [x + 0.5 for x in t]
    bottom.plot(mid, [r.get("p50_ms") for r in rows], color="tab:blue", label="p50")
    bottom.plot(mid, [r.get("p99_ms") for r in rows], color="tab:purple", label="p99")
    bottom.set_ylabel("latency (ms)")
    bottom.set_xlabel("seconds since the load started")
    bottom.legend(loc="upper left", fontsize=7)
    events = scenario.get("events", [])
    mark_events([top, bottom], events,
                max([float(scenario["duration_s"]), *(float(e["t"]) for e in events)]))
    fig.suptitle(f"failover: {scenario['service']} — {scenario['total']} requests, "
                 f"{scenario['failed']} failed", fontsize=10)
    return fig


def chaos(doc: dict[str, Any]) -> Figure:
    """Checkouts answered per second by outcome, the kills and the settle phase marked."""
    fig = Figure(figsize=(9, 3.8), dpi=DPI, layout="tight")
    ax = fig.subplots()
    rows = doc.get("seconds", [])
    t = [float(r["t"]) for r in rows]
    base = [0] * len(rows)
    for outcome, colour in OUTCOME_COLOURS.items():
        values = [int(r.get(outcome, 0)) for r in rows]
        ax.bar(t, values, width=1.0, align="edge", bottom=base, color=colour,
               label=outcome.replace("_", " "))
        base = [b + v for b, v in zip(base, values, strict=True)]
    settle, settled = doc.get("settle_started_s"), doc.get("settled_after_s")
    if settle is not None and settled is not None:
        ax.axvspan(float(settle), float(settle) + float(settled), color="tab:blue",
                   alpha=0.12, label="settling")
    ax.set_ylim(0, max(base, default=1) * 1.5 or 1)  # room for the labels
    kills = kill_events(doc.get("kills", []))
    mark_events([ax], kills, max([len(rows), *(float(k["t"]) for k in kills)]))
    ax.set_xlabel("seconds since the load started")
    ax.set_ylabel("checkouts answered / s")
    ax.legend(loc="upper right", fontsize=7)
    fig.suptitle(f"chaos: {doc['n']} checkouts, {len(doc.get('kills', []))} kills", fontsize=10)
    return fig


def replication(doc: dict[str, Any]) -> Figure:
    """The standby's lag over time, with its p50 and maximum."""
    fig = Figure(figsize=(9, 3.2), dpi=DPI, layout="tight")
    ax = fig.subplots()
    samples = doc.get("samples", [])
    ax.plot([float(s["t"]) for s in samples], [float(s["lag_ms"]) for s in samples],
            marker=".", color="tab:blue", label="lag")
    ax.axhline(float(doc["p50_lag_ms"]), color="gray", linestyle=":",
               label=f"p50 {float(doc['p50_lag_ms']):.1f} ms")
    ax.axhline(float(doc["max_lag_ms"]), color="tab:red", linestyle="--",
               label=f"max {float(doc['max_lag_ms']):.1f} ms")
    ax.set_xlabel("seconds")
    ax.set_ylabel("replication lag (ms)")
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper right", fontsize=7)
    return fig


def restore(doc: dict[str, Any]) -> Figure:
    """Restore time per database and in total, against the RTO target (log scale when the
    target dwarfs the times)."""
    fig = Figure(figsize=(9, 1.4 + 0.35 * (len(doc["services"]) + 1)), dpi=DPI,
                 layout="tight")
    ax = fig.subplots()
    names = [str(s["service"]) for s in doc["services"]] + ["total"]
    values = [float(s["seconds"]) for s in doc["services"]] + [float(doc["total_seconds"])]
    ax.barh(names, values, color=["tab:blue"] * (len(names) - 1) + ["tab:green"])
    target = doc.get("rto_target_s")
    if target is not None:
        ax.axvline(float(target), color="tab:red", linestyle="--",
                   label=f"RTO target {target} s")
        ax.legend(loc="upper center", fontsize=7)
        if float(target) > 20 * max(max(values), 1e-3):
            ax.set_xscale("log")
    ax.invert_yaxis()
    ax.set_xlabel("seconds")
    return fig


def bench(doc: dict[str, Any], connections: int = 20) -> Figure:
    """Requests per second of every figure measured at ``connections``."""
    runs = [r for r in doc.get("runs", []) if r["connections"] == connections]
    fig = Figure(figsize=(9, 0.8 + 0.35 * max(len(runs), 1)), dpi=DPI, layout="tight")
    ax = fig.subplots()
    ax.barh([str(r["name"]) for r in runs], [float(r["rps"]) for r in runs],
            color="tab:blue")
    for i, r in enumerate(runs):
        ax.annotate(f"p99 {float(r['p99_ms']):.1f} ms", xy=(float(r["rps"]), i),
                    xytext=(3, 0), textcoords="offset points", va="center", fontsize=7)
    rates = [float(r["rps"]) for r in runs if float(r["rps"]) > 0]
    if rates and max(rates) > 50 * min(rates):  # checkouts/s next to reads/s
        ax.set_xscale("log")
        ax.set_xlim(min(rates) / 2, max(rates) * 4)
    elif rates:
        ax.set_xlim(0, max(rates) * 1.25)
    ax.invert_yaxis()
    ax.set_xlabel(f"requests / s at {connections} connections"
                  + (" (log scale)" if ax.get_xscale() == "log" else ""))
    return fig


def png(fig: Figure) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()
