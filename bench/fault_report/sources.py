"""What the report is made of: one JSON document per producer under ``<report>/data/``,
and ``runs.json`` saying how each producer's run went (or why it did not run)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PRODUCERS = ("failover", "chaos", "bench", "replication", "restore")
RUNS_FILE = "runs.json"

TITLES = {
    "failover": "Failover under load",
    "chaos": "Chaos run",
    "bench": "Benchmark",
    "replication": "Replication lag (catalog, PostgreSQL standby)",
    "restore": "Restore drill",
}


@dataclass(frozen=True)
class NotRun:
    """A producer whose data is missing, and why."""

    reason: str


@dataclass(frozen=True)
class Run:
    """How a producer's subprocess went (from ``runs.json``)."""

    exit_code: int | None = None
    seconds: float | None = None
    reason: str | None = None  # why it did not run or did not finish

    def as_dict(self) -> dict[str, Any]:
        return {"exit_code": self.exit_code, "seconds": self.seconds, "reason": self.reason}


@dataclass
class Inputs:
    """Every producer's document (or why it is missing) and how its run went."""

    docs: dict[str, dict[str, Any] | NotRun] = field(default_factory=dict)
    runs: dict[str, Run] = field(default_factory=dict)
    label: str = ""  # e.g. the report's date

    def doc(self, name: str) -> dict[str, Any] | None:
        """The producer's document, ``None`` when it did not run."""
        found = self.docs.get(name)
        return found if isinstance(found, dict) else None

    def missing(self, name: str) -> str | None:
        """Why the producer's document is missing (``None``: it is there)."""
        found = self.docs.get(name, NotRun("no data"))
        return found.reason if isinstance(found, NotRun) else None


def data_file(data_dir: Path, name: str) -> Path:
    """Where producer ``name``'s JSON lives."""
    return data_dir / f"{name}.json"


def read_runs(data_dir: Path) -> dict[str, Run]:
    """``runs.json`` (``{}`` when there is none: data placed by hand)."""
    path = data_dir / RUNS_FILE
    if not path.exists():
        return {}
    raw = json.loads(path.read_text())
    return {name: Run(entry.get("exit_code"), entry.get("seconds"), entry.get("reason"))
            for name, entry in raw.items()}


def write_runs(data_dir: Path, runs: dict[str, Run]) -> Path:
    """Write ``runs.json``; its path."""
    path = data_dir / RUNS_FILE
    path.write_text(json.dumps({n: r.as_dict() for n, r in runs.items()}, indent=2) + "\n")
    return path


def load(data_dir: Path, label: str = "") -> Inputs:
    """Every producer's document from ``data_dir``; a missing or unreadable one becomes
    :class:`NotRun` with the reason (the run's own reason first)."""
    runs = read_runs(data_dir)
    inputs = Inputs(runs=runs, label=label)
    for name in PRODUCERS:
        path = data_file(data_dir, name)
        run = runs.get(name)
        if not path.exists():
            reason = (run.reason if run and run.reason else
                      f"exit status {run.exit_code}, no {path.name}" if run else
                      f"no {path.name}")
            inputs.docs[name] = NotRun(reason)
            continue
        try:
            doc = json.loads(path.read_text())
        except ValueError as exc:
            inputs.docs[name] = NotRun(f"{path.name} is not JSON ({exc})")
            continue
        inputs.docs[name] = doc if isinstance(doc, dict) else NotRun(
            f"{path.name} is not a JSON object")
    return inputs
