"""``lint(specs)``: Spectral (with the reviewed exceptions) plus OpenAPI validity."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from governance.lint import exceptions, validity
from governance.lint.findings import Finding
from governance.lint.paths import (
    EXCEPTIONS,
    RULESET,
    LintSetupError,
    default_specs,
    display,
    repo_root,
    spectral_binary,
)
from governance.lint.spectral import SpectralRun


@dataclass
class LintReport:
    """All findings of one lint run over ``specs`` (repository-relative names)."""

    specs: list[str]
    findings: list[Finding] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        """The findings that fail the run."""
        return [finding for finding in self.findings if finding.is_error]

    def summary(self) -> dict[str, dict[str, int]]:
        """Per file (every linted spec, then any other file with findings): counts by
        severity."""
        counts: dict[str, dict[str, int]] = {spec: {} for spec in self.specs}
        for finding in self.findings:
            per_file = counts.setdefault(finding.file, {})
            per_file[finding.severity] = per_file.get(finding.severity, 0) + 1
        return counts


def lint(specs: Sequence[Path] | None = None, *, root: Path | None = None,
         exceptions_file: Path | None = None, ruleset: Path | None = None,
         check_shared: bool | None = None) -> LintReport:
    """Lint *specs* (default: every ``openapi/*/v*.yaml``) in one Spectral run.

    Reviewed exceptions lower their rule to ``hint`` at their path (Spectral overrides), so
    the same run shows what each entry covers and which entries are stale. Entries on
    shared files are judged stale only when *check_shared* (default: when every spec is
    linted, since a partial run may not reach the shared file)."""
    root = root or repo_root()
    binary = spectral_binary(root)
    ruleset = (ruleset or root / RULESET).resolve()
    everything = default_specs(root)
    targets = [Path(spec).resolve() for spec in (specs or everything)]
    missing = [str(spec) for spec in targets if not spec.is_file()]
    if missing:
        raise LintSetupError(f"no such spec: {', '.join(missing)}")
    if not targets:
        raise LintSetupError(f"no spec to lint under {root / 'openapi'}")
    if check_shared is None:
        check_shared = {spec.resolve() for spec in everything} <= set(targets)
    entries, findings = exceptions.load(exceptions_file or root / EXCEPTIONS, root)
    entries = exceptions.applicable(entries, targets)

    generated = None
    if entries:
        generated = _write_ruleset(exceptions.override_ruleset(entries, targets, ruleset),
                                   ruleset.parent)
    run = SpectralRun(binary, generated or ruleset, targets, root)
    try:
        for spec in targets:  # while Spectral runs
            findings += validity.validate(spec, root)
        spectral_findings = run.findings()
    finally:
        run.stop()
        if generated is not None:
            generated.unlink(missing_ok=True)
    findings += [_mark_excepted(finding, entries, root) for finding in spectral_findings]
    judged = [entry for entry in entries if check_shared or entry.file in targets]
    findings += exceptions.check(judged, spectral_findings, root, targets)
    return LintReport([display(spec, root) for spec in targets], sorted(set(findings)))


def _mark_excepted(finding: Finding, entries: Sequence[exceptions.LintException],
                   root: Path) -> Finding:
    """Name the exception that lowered *finding* in its message."""
    if finding.severity != exceptions.EXCEPTED:
        return finding
    for entry in entries:
        if entry.covers(finding, root):
            return replace(finding, message=f"{finding.message} (excepted: "
                                            f"{entry.source}:{entry.line})")
    return finding


def _write_ruleset(content: dict, folder: Path) -> Path:
    """The generated ruleset sits next to ``charter.yaml``: Spectral resolves
    ``extends``, ``functionsDir`` and npm rulesets from the ruleset's own folder."""
    with tempfile.NamedTemporaryFile("w", dir=folder, prefix=".lint-", suffix=".yaml",
                                     delete=False, encoding="utf-8") as handle:
        yaml.safe_dump(content, handle, sort_keys=False)
    return Path(handle.name)
