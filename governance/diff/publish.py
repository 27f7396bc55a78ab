"""Published baselines: ``openapi/.published/<api>/v<major>.yaml``.

A baseline is the contract clients were promised for one major version. It is
self-contained (references to ``openapi/common/`` inlined), so a later change to a common
file shows up as a difference. Only :func:`publish` writes it, and it refuses a spec that
breaks its current baseline unless a reason is given; every publication is recorded in
``openapi/.published/CHANGELOG.md``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import yaml

from governance import openapi_model as model
from governance.diff import engine

PUBLISHED = ".published"
_SPEC_NAME = re.compile(r"^v(\d+)\.yaml$")
CHANGELOG_HEADER = """# Published API baselines

Written only by `charter gov publish`; one entry per publication. A breaking
publication (`--allow-breaking`) carries its reason.
"""


@dataclass(frozen=True)
class SpecRef:
    """One API version: ``openapi/<api>/v<major>.yaml`` and its baseline."""

    api: str
    version: str  # "v1"
    spec: Path
    baseline: Path

    @property
    def name(self) -> str:
        return f"{self.api}/{self.version}"


def specs(openapi_dir: Path, published_dir: Path | None = None) -> list[SpecRef]:
    """Every ``<api>/v<N>.yaml`` under *openapi_dir* (``common`` and dot folders skipped)."""
    published = published_dir or openapi_dir / PUBLISHED
    found = []
    for path in sorted(openapi_dir.glob("*/v*.yaml")):
        api = path.parent.name
        if api.startswith(".") or api == "common" or not _SPEC_NAME.match(path.name):
            continue
        found.append(SpecRef(api, path.stem, path, published / api / path.name))
    return found


def select(openapi_dir: Path, names: Iterable[str],
           published_dir: Path | None = None) -> list[SpecRef]:
    """The specs named ``api`` (every version) or ``api/vN``; all when *names* is empty."""
    every = specs(openapi_dir, published_dir)
    wanted = list(names)
    if not wanted:
        return every
    chosen = [s for s in every if s.name in wanted or s.api in wanted]
    unknown = [n for n in wanted if not any(s.name == n or s.api == n for s in every)]
    if unknown:
        raise model.SpecError(f"no such spec: {', '.join(unknown)} "
                              f"(known: {', '.join(s.name for s in every)})")
    return chosen


@dataclass
class Outcome:
    """What publishing one spec did."""

    spec: SpecRef
    status: str  # "published", "unchanged", "refused"
    findings: list[engine.Finding] = field(default_factory=list)


def check(ref: SpecRef, today: date | None = None) -> list[engine.Finding]:
    """The changes from the baseline of *ref* to its spec (the baseline must exist)."""
    return engine.compare_files(ref.baseline, ref.spec, today)


def publish(ref: SpecRef, *, allow_breaking: str | None = None,
            today: date | None = None) -> Outcome:
    """Write the baseline of *ref* unless its spec breaks the current one (see module)."""
    bundled = model.bundle(ref.spec)
    findings: list[engine.Finding] = []
    first = not ref.baseline.exists()
    if not first:
        findings = engine.compare(model.dereference(ref.baseline), model.dereference(ref.spec),
                                  today)
        if not findings and model.load(ref.baseline) == bundled:
            return Outcome(ref, "unchanged")
        if engine.has_breaking(findings) and not allow_breaking:
            return Outcome(ref, "refused", findings)
    ref.baseline.parent.mkdir(parents=True, exist_ok=True)
    text = (f"# Published baseline of openapi/{ref.api}/{ref.version}.yaml — written by "
            "`charter gov publish`; do not edit.\n"
            + yaml.safe_dump(bundled, sort_keys=False, allow_unicode=True, width=100))
    ref.baseline.write_text(text, encoding="utf-8")
    _record(ref, bundled, findings, allow_breaking, today, first=first)
    return Outcome(ref, "published", findings)


def _record(ref: SpecRef, bundled: dict[str, object], findings: list[engine.Finding],
            reason: str | None, today: date | None, *, first: bool) -> None:
    log = ref.baseline.parent.parent / "CHANGELOG.md"
    if not log.exists():
        log.write_text(CHANGELOG_HEADER, encoding="utf-8")
    version = (bundled.get("info") or {}).get("version", "?")  # type: ignore[attr-defined]
    day = (today or datetime.now(UTC).date()).isoformat()
    counts = {lvl: sum(1 for f in findings if f.level is lvl) for lvl in engine.Level}
    entry = [f"\n## {day} {ref.name} {version}\n"]
    entry.append(f"- {counts[engine.Level.ERR]} breaking, {counts[engine.Level.WARN]} maybe "
                 f"breaking, {counts[engine.Level.INFO]} safe change(s) since the last "
                 "baseline\n" if not first else "- first baseline\n")
    if engine.has_breaking(findings):
        entry.append(f"- **breaking, allowed:** {reason}\n")
        entry.extend(f"  - `{f.rule}` {f.location} — {f.message}\n"
                     for f in findings if f.level is engine.Level.ERR)
    with log.open("a", encoding="utf-8") as fh:
        fh.write("".join(entry))
