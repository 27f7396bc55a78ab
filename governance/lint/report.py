"""Readable and JSON renderings of a :class:`LintReport`."""

from __future__ import annotations

import json

from governance.lint.engine import LintReport


def text(report: LintReport) -> str:
    """``file:line rule severity message`` per finding, then a per-file summary."""
    lines = [f"{f.file}:{f.line} {f.rule} {f.severity} {f.message}" for f in report.findings]
    if lines:
        lines.append("")
    width = max((len(name) for name in report.summary()), default=4)
    for name, counts in report.summary().items():
        detail = ", ".join(_count(counts[s], s) for s in ("error", "warning", "info", "hint")
                           if counts.get(s))
        lines.append(f"{name:<{width}}  {detail or 'clean'}")
    errors, total = len(report.errors), len(report.findings)
    lines.append(f"{_count(errors, 'error')}, {_count(total - errors, 'other finding')} "
                 f"in {_count(len(report.specs), 'spec')}")
    return "\n".join(lines)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def as_json(report: LintReport) -> str:
    """The findings, the per-file summary and the error count as one JSON document."""
    return json.dumps({"specs": report.specs,
                       "findings": [finding.as_dict() for finding in report.findings],
                       "summary": report.summary(),
                       "errors": len(report.errors)}, indent=2)
