"""Reviewed lint exceptions (``governance/lint-exceptions.yaml``) as Spectral overrides.

Each entry is ``{rule, path, reason}``; ``path`` is a file (repository-relative) with an
optional JSON pointer (``openapi/cart/v1.yaml#/components/schemas/ProductId``). Entries are
applied by Spectral itself through ``overrides`` in a generated ruleset that extends
``charter.yaml`` — never by filtering results afterwards: the rule's severity becomes
``hint`` at that path, so the finding stays visible (and proves the entry is not stale)
but no longer fails the run. An entry without a reason, a second entry for the same rule
and path, or one that covers no finding (stale) is an error.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from governance.lint.findings import EXCEPTION_RULE, Finding, decode_pointer, spectral_pointer
from governance.lint.paths import display

_KEYS = {"rule", "path", "reason"}
#: the severity an excepted finding keeps (reported, never failing)
EXCEPTED = "hint"
_GLOB_SPECIAL = re.compile(r"([\\*?\[\]{}()!+@,])")


@dataclass(frozen=True)
class LintException:
    """One reviewed exception: *rule* is lowered to a hint at *pointer* (Spectral's form)
    of *file* and below."""

    rule: str
    path: str
    file: Path
    pointer: str
    reason: str
    line: int
    source: str = "governance/lint-exceptions.yaml"

    def covers(self, finding: Finding, root: Path) -> bool:
        """Whether Spectral's override for this entry applies to *finding* (same rule, same
        file, pointer equal to or below the entry's)."""
        return (finding.rule == self.rule
                and finding.file == display(self.file, root)
                and (self.pointer == "#" or finding.pointer == self.pointer
                     or finding.pointer.startswith(self.pointer + "/")))


def _entry_lines(text: str) -> list[int]:
    """1-based line of each item of the ``exceptions`` list (for messages)."""
    node = yaml.compose(text)
    if not isinstance(node, yaml.MappingNode):
        return []
    for key, value in node.value:
        if key.value == "exceptions" and isinstance(value, yaml.SequenceNode):
            return [item.start_mark.line + 1 for item in value.value]
    return []


def load(path: Path, root: Path) -> tuple[list[LintException], list[Finding]]:
    """The valid entries of the exceptions file and a finding for each invalid one."""
    if not path.is_file():
        return [], []
    where = display(path, root)
    text = path.read_text(encoding="utf-8")

    def problem(line: int, message: str) -> Finding:
        return Finding(where, line, EXCEPTION_RULE, "error", message)

    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        return [], [problem(1, f"not valid YAML: {exc}")]
    items = data.get("exceptions", []) if isinstance(data, dict) else None
    if items is None and isinstance(data, dict):
        items = []
    if not isinstance(items, list) or set(data) - {"exceptions"}:
        return [], [problem(1, "the file holds one key, `exceptions`: a list of "
                               "{rule, path, reason}")]
    lines = _entry_lines(text)
    entries: list[LintException] = []
    problems: list[Finding] = []
    seen: dict[tuple[str, str, str], int] = {}
    for index, item in enumerate(items):
        line = lines[index] if index < len(lines) else 1
        entry, message = _parse(item, root, line, where)
        if entry is None:
            problems.append(problem(line, message))
            continue
        key = (entry.rule, display(entry.file, root), entry.pointer)
        if key in seen:
            problems.append(problem(line, f"second exception for {entry.rule} at {entry.path} "
                                          f"(first on line {seen[key]}): one reason per rule "
                                          "and path"))
            continue
        seen[key] = line
        entries.append(entry)
    return entries, problems


def _parse(item: Any, root: Path, line: int,
           source: str) -> tuple[LintException | None, str]:
    if not isinstance(item, dict):
        return None, "an exception is a mapping {rule, path, reason}"
    unknown = set(item) - _KEYS
    if unknown:
        return None, f"unknown keys {sorted(unknown)}: an exception has rule, path, reason"
    rule, path, reason = item.get("rule"), item.get("path"), item.get("reason")
    if not isinstance(rule, str) or not rule.strip():
        return None, "exception without a `rule`"
    if not isinstance(path, str) or not path.strip():
        return None, f"exception for {rule} without a `path`"
    if not isinstance(reason, str) or not reason.strip():
        return None, f"exception for {rule} at {path} without a `reason`"
    name, _, pointer = path.partition("#")
    file = (root / name).resolve()
    if not file.is_file():
        return None, f"stale exception for {rule}: {name} does not exist"
    try:
        segments = decode_pointer(pointer)
    except ValueError as exc:
        return None, f"exception for {rule}: {exc}"
    return LintException(rule.strip(), path, file, spectral_pointer(segments), reason.strip(),
                         line, source), ""


def applicable(entries: Iterable[LintException], specs: Sequence[Path]) -> list[LintException]:
    """Entries Spectral can apply in a run over *specs*: those on a linted spec, and those
    on a shared file (not a spec of its own) reached from the linted specs."""
    linted = {spec.resolve() for spec in specs}
    return [entry for entry in entries
            if entry.file in linted or not _is_spec(entry.file)]


def _is_spec(file: Path) -> bool:
    return file.parent.parent.name == "openapi" and re.fullmatch(r"v\d+", file.stem) is not None


def _glob(file: Path, base: Path) -> str:
    """*file* as a minimatch pattern relative to the ruleset's folder (how Spectral
    matches ``overrides``), glob characters escaped."""
    return _GLOB_SPECIAL.sub(r"\\\1", Path(os.path.relpath(file, base)).as_posix())


def override_ruleset(entries: Sequence[LintException], specs: Sequence[Path],
                     ruleset: Path) -> dict[str, Any]:
    """A ruleset extending *ruleset* with one pointer override per entry.

    Spectral registers a pointer override only when its ``files`` pattern matches the
    linted document, then matches the pattern against each result's own file. An entry
    on a shared file (``openapi/common/…``) therefore gets the pattern
    ``{<every linted spec>,<the shared file>}``; :func:`check` reports it should that
    also cover the same pointer in a spec."""
    base = ruleset.parent
    spec_globs = [_glob(spec.resolve(), base) for spec in specs]
    overrides = []
    for entry in entries:
        own = _glob(entry.file, base)
        pattern = own if own in spec_globs else "{" + ",".join([*spec_globs, own]) + "}"
        overrides.append({"files": [f"{pattern}{entry.pointer}"],
                          "rules": {entry.rule: EXCEPTED}})
    return {"extends": [f"./{ruleset.name}"], "overrides": overrides}


def check(entries: Sequence[LintException], findings: Sequence[Finding], root: Path,
          specs: Sequence[Path]) -> list[Finding]:
    """Errors for stale *entries* (no finding of the run is theirs) and for entries on a
    shared file whose pattern also lowered a finding in a linted spec."""
    linted = {spec.resolve() for spec in specs}
    problems = []
    for entry in entries:
        if not any(entry.covers(finding, root) for finding in findings):
            problems.append(Finding(entry.source, entry.line, EXCEPTION_RULE, "error",
                                    f"stale exception: {entry.rule} reports nothing at "
                                    f"{entry.path}; remove the entry"))
        if entry.file in linted:
            continue
        for hit in findings:
            if (hit.rule == entry.rule and hit.severity == EXCEPTED
                    and (root / hit.file).resolve() in linted
                    and (entry.pointer == "#" or hit.pointer == entry.pointer
                         or hit.pointer.startswith(entry.pointer + "/"))):
                problems.append(Finding(entry.source, entry.line, EXCEPTION_RULE, "error",
                                        f"exception for {entry.path} also covers "
                                        f"{hit.file}:{hit.line}; use a narrower pointer"))
    return problems
