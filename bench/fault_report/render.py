"""JSON → the report: PNG plots beside ``index.md`` and ``index.html`` (the HTML embeds the
plots as data URIs, so the file alone is readable). Runs nothing; a producer without data
shows as ``not run: <reason>``."""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markdown_it import MarkdownIt
from matplotlib.figure import Figure

from bench.fault_report import plots, summary
from bench.fault_report.sources import PRODUCERS, TITLES, Inputs

SUMMARY_HEADER = ("scenario", "requests", "failed", "ejected after", "readmitted after",
                  "p99 ms", "result")


@dataclass
class Rendered:
    """What :func:`render` wrote."""

    markdown: Path
    html: Path
    images: list[Path] = field(default_factory=list)


def cell(value: object) -> str:
    """A Markdown table cell (pipes escaped, one line)."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def table(header: tuple[str, ...] | list[str], rows: list[list[object]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def summary_table(inputs: Inputs) -> str:
    """The compact summary table at the top of the report (Markdown)."""
    return table(SUMMARY_HEADER, [[r.scenario, r.requests, r.failed, r.ejected_after,
                                   r.readmitted_after, r.p99_ms, r.result]
                                  for r in summary.rows(inputs)])


def picture(name: str, alt: str) -> str:
    """A Markdown image of the PNG ``name`` beside the page."""
    return f"![{alt}]({name})"


def slug(text: str) -> str:
    """A file-name-safe version of ``text``."""
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


# -- sections: (Markdown, figures to save) ------------------------------------------------
Section = tuple[list[str], dict[str, Figure]]


def failover_section(doc: dict[str, Any]) -> Section:
    """Per scenario: the plot, the event timeline and the errors per phase."""
    lines: list[str] = []
    figures: dict[str, Figure] = {}
    for s in doc["scenarios"]:
        name = f"failover-{slug(str(s['service']))}.png"
        figures[name] = plots.failover(s)
        lines += [f"### {s['service']}", "",
                  f"{summary.number(s['rate'])} req/s for {summary.number(s['duration_s'])} s "
                  "through the gateway: "
                  f"{summary.number(s['total'])} requests, **{s['failed']} failed**; ejected "
                  f"{summary.seconds(s.get('ejected_after_s'))} after the kill, re-admitted "
                  f"{summary.seconds(s.get('readmitted_after_restart_s'))} after the restart.",
                  "", picture(name, f"failover of {s['service']}"), "",
                  table(["t (s)", "event"], [[f"{float(e['t']):.2f}", e["what"]]
                                             for e in s.get("events", [])]), "",
                  "Errors per phase:", "",
                  table(["phase", "from (s)", "to (s)", "ok", "failed"],
                        [[p.name, f"{p.start:.1f}", f"{p.end:.1f}", p.ok, p.failed]
                         for p in summary.failover_phases(s)]), ""]
    return lines, figures


def chaos_section(doc: dict[str, Any]) -> Section:
    """The checkouts, kills and settle time, the plot and the invariant table."""
    kills = ", ".join(f"{k['service']} at {float(k['t']):.1f} s" for k in doc["kills"])
    settled = doc.get("settled_after_s")
    counts = doc["checkouts"]
    lines = [f"{doc['n']} concurrent v2 checkouts ({doc['concurrency']} clients, "
             f"{doc['broker']} broker{', injected faults' if doc.get('faults') else ''}): "
             f"{counts['accepted']} accepted, {counts['refused']} refused, "
             f"**{counts['gave_up']} given up**; kill -9: {kills or 'none'}; settled "
             + (f"{settled:.1f} s after every service was back." if settled is not None
                else "never (the bounded wait ran out)."),
             "", picture("chaos.png", "chaos run"), "",
             "Order outcomes: " + ", ".join(f"{k} {v}" for k, v in
                                            sorted(doc.get("statuses", {}).items())) + ".", "",
             table(["invariant", "expected", "actual", "ok"],
                   [[i["name"], i["expected"], i["actual"], "yes" if i["ok"] else "**NO**"]
                    for i in doc["invariants"]]), ""]
    return lines, {"chaos.png": plots.chaos(doc)}


def bench_section(doc: dict[str, Any]) -> Section:
    """The run's machine, the throughput plot and every figure."""
    machine = doc.get("machine", {})
    lines = [f"{'Quick' if doc.get('quick') else 'Full'} run of `python -m bench`, "
             f"{doc.get('date', '?')}, {machine.get('cores', '?')} cores "
             f"({machine.get('cpu_model', '?')}).", "",
             picture("bench.png", "benchmark throughput"), "",
             table(["figure", "conns", "requests", "req/s", "p50 ms", "p99 ms", "non-2xx",
                    "errors"],
                   [[r["name"], r["connections"], r["requests"], f"{float(r['rps']):,.1f}",
                     f"{float(r['p50_ms']):.1f}", f"{float(r['p99_ms']):.1f}", r["non_2xx"],
                     r["errors"]] for r in doc["runs"]]), ""]
    return lines, {"bench.png": plots.bench(doc)}


def replication_section(doc: dict[str, Any]) -> Section:
    """The lag's p50 and maximum and its plot."""
    lines = [f"{len(doc['samples'])} samples: p50 **{float(doc['p50_lag_ms']):.1f} ms**, "
             f"max **{float(doc['max_lag_ms']):.1f} ms**.", "",
             picture("replication.png", "replication lag"), ""]
    return lines, {"replication.png": plots.replication(doc)}


def restore_section(doc: dict[str, Any]) -> Section:
    """The restore time against the RTO, the backup, the orders check, per database."""
    target = doc.get("rto_target_s")
    backup = ""
    if doc.get("backup_seconds") is not None:
        backup = (f" The backup before it took {float(doc['backup_seconds']):.2f} s"
                  + (f" ({int(doc['backup_bytes']):,} bytes)" if doc.get("backup_bytes")
                     is not None else "") + ".")
    if doc.get("orders_after_restore") is not None:
        lost = "deleting the databases and " if doc.get("databases_deleted") else ""
        backup += (f" Orders at the backup: {doc.get('orders_at_backup')}; after {lost}"
                   f"restoring: {doc['orders_after_restore']}.")
    lines = [f"Restored {len(doc['services'])} databases in **{float(doc['total_seconds']):.3g} s**"
             + (f" against an RTO target of {target} s." if target is not None else ".")
             + backup, "", picture("restore.png", "restore time against the RTO"), "",
             table(["service", "kind", "seconds", "bytes"],
                   [[s["service"], s.get("kind", "?"), f"{float(s['seconds']):.3f}",
                     f"{int(s['bytes']):,}" if s.get("bytes") is not None else summary.DASH]
                    for s in doc["services"]]), ""]
    return lines, {"restore.png": plots.restore(doc)}


SECTIONS: dict[str, Callable[[dict[str, Any]], Section]] = {
    "failover": failover_section,
    "chaos": chaos_section,
    "bench": bench_section,
    "replication": replication_section,
    "restore": restore_section,
}


def sections(inputs: Inputs) -> tuple[list[str], dict[str, Figure]]:
    """Every producer's section (``not run: …`` when its data is missing or malformed)."""
    lines: list[str] = []
    figures: dict[str, Figure] = {}
    for name in PRODUCERS:
        lines += [f"## {TITLES[name]}", ""]
        doc = inputs.doc(name)
        run = inputs.runs.get(name)
        if doc is None:
            lines += [f"not run: {inputs.missing(name)}", ""]
            continue
        try:
            body, made = SECTIONS[name](doc)
        except (KeyError, TypeError, ValueError) as exc:
            lines += [f"not run: unexpected data ({exc!r})", ""]
            continue
        if run is not None and run.exit_code not in (0, None):
            lines += [f"The producer exited with status {run.exit_code}"
                      + (f" ({run.reason})" if run.reason else "") + ".", ""]
        lines += body
        figures.update(made)
    return lines, figures


def markdown(inputs: Inputs) -> tuple[str, dict[str, Figure]]:
    """The whole report as Markdown, and the figures it refers to by file name."""
    body, figures = sections(inputs)
    head = [f"# Fault-tolerance report {inputs.label}".rstrip(), "",
            summary_table(inputs), "",
            "Failover p99: the highest per-second p99 of the run; bench: the figure's p99. "
            "Made by `make report` (`bench/fault_report`); `docs/operations.md`, "
            "Fault-tolerance report, says what each part measures.", ""]
    return "\n".join(head + body), figures


def relative_picture(name: str, alt: str) -> str:
    return f"![{alt}]({name})"


def html(markdown_text: str, title: str) -> str:
    """The Markdown rendered into the HTML page (raw HTML in the text is escaped)."""
    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown_text)
    env = Environment(loader=FileSystemLoader(Path(__file__).parent),
                      autoescape=select_autoescape(["html"]))
    return env.get_template("page.html").render(title=title, body=body)


def render(inputs: Inputs, out: Path) -> Rendered:
    """Write the plots, ``index.md`` and ``index.html`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    text, figures = markdown(inputs)
    page = text
    written = []
    for name, fig in figures.items():
        data = plots.png(fig)
        (out / name).write_bytes(data)
        written.append(out / name)
        page = page.replace(f"]({name})",
                            f"](data:image/png;base64,{base64.b64encode(data).decode()})")
    md_path, html_path = out / "index.md", out / "index.html"
    md_path.write_text(text + "\n")
    html_path.write_text(html(page, f"Fault-tolerance report {inputs.label}".strip()))
    return Rendered(md_path, html_path, written)
