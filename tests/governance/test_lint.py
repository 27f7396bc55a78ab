"""``charter gov lint``: reviewed exceptions, the command line, and the real specs.

The rules themselves are tested one by one in ``test_lint_rules.py``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from charterctl.cli import main
from governance.lint import exceptions
from governance.lint.engine import LintReport, lint
from governance.lint.findings import Finding
from governance.lint.paths import repo_root

ROOT = repo_root(Path(__file__))
FIXTURES = Path(__file__).parent / "fixtures" / "lint"
CHARTER = Path(sys.executable).with_name("charter")
NUMERIC = "owasp:api1:2023-no-numeric-ids"
OPEN_OBJECT = "charter-object-additional-properties"
WIDGET_ID = "#/components/schemas/WidgetId"
OWNER_ID = "#/paths/~1widgets~1{widget_id}/get/parameters/0/schema"
SHOP_ID = "#/paths/~1widgets~1{widget_id}/get/parameters/1/schema"
PROBLEM = "#/components/schemas/Problem"


def _numeric_ids_spec(folder: Path) -> Path:
    """The good fixture with three guessable ids: WidgetId (also without an integer
    format) and the query parameters owner_id and shop_id; its shared Problem schema is
    open (additionalProperties: true)."""
    shutil.copytree(FIXTURES / "common", folder / "common")
    problem_file = folder / "common" / "problem.yaml"
    shared = yaml.safe_load(problem_file.read_text())
    shared["components"]["schemas"]["Problem"]["additionalProperties"] = True
    problem_file.write_text(yaml.safe_dump(shared, sort_keys=False))
    spec: dict[str, Any] = yaml.safe_load((FIXTURES / "good" / "v1.yaml").read_text())
    spec["components"]["schemas"]["WidgetId"] = {"type": "integer", "minimum": 1,
                                                 "maximum": 10**12}
    bounded = {"type": "integer", "format": "int64", "minimum": 1, "maximum": 10**12}
    spec["paths"]["/widgets/{widget_id}"]["get"]["parameters"] = [
        {"name": name, "in": "query", "description": "Filter.", "schema": dict(bounded)}
        for name in ("owner_id", "shop_id")]
    (folder / "api").mkdir()
    path = folder / "api" / "v1.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def excepted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, LintReport]:
    """One run with an exceptions file holding valid, reason-less, stale and duplicate
    entries, and one on a shared file."""
    folder = tmp_path_factory.mktemp("lint-exceptions")
    spec = _numeric_ids_spec(folder)
    common = folder / "common" / "problem.yaml"
    entries = [
        {"rule": NUMERIC, "path": f"{spec}{WIDGET_ID}", "reason": "Widgets are public."},
        {"rule": NUMERIC, "path": f"{spec}{OWNER_ID.replace('{', '%7B').replace('}', '%7D')}",
         "reason": "Owners are public too (pointer as the JSON report prints it)."},
        {"rule": NUMERIC, "path": f"{spec}{SHOP_ID}", "reason": "  "},
        {"rule": "owasp:api4:2023-array-limit", "path": f"{spec}{WIDGET_ID}",
         "reason": "Stale: WidgetId is no array."},
        {"rule": NUMERIC, "path": f"{spec}{WIDGET_ID}", "reason": "Said twice."},
        {"rule": OPEN_OBJECT, "path": f"{common}{PROBLEM}",
         "reason": "RFC 9457 allows extension members."},
        {"rule": NUMERIC, "path": f"{folder}/nowhere.yaml", "reason": "No such file."},
    ]
    exceptions_file = folder / "lint-exceptions.yaml"
    exceptions_file.write_text(yaml.safe_dump({"exceptions": entries}, sort_keys=False))
    return spec, lint([spec], root=ROOT, exceptions_file=exceptions_file, check_shared=True)


def _at(report: LintReport, file: Path, rule: str, severity: str = "error") -> set[str]:
    return {f.pointer.replace("%7B", "{").replace("%7D", "}") for f in report.findings
            if f.rule == rule and f.file == file.resolve().as_posix()
            and f.severity == severity}


def _exception_problems(report: LintReport) -> list[Finding]:
    return [f for f in report.findings if f.rule == "charter-lint-exception"]


def test_a_valid_exception_silences_exactly_its_rule_and_path(
        excepted: tuple[Path, LintReport]) -> None:
    spec, report = excepted
    assert _at(report, spec, NUMERIC) == {SHOP_ID}  # shop_id's entry has no reason
    assert _at(report, spec, NUMERIC, "hint") == {WIDGET_ID, OWNER_ID}  # lowered by Spectral
    assert WIDGET_ID in _at(report, spec, "owasp:api4:2023-integer-format")
    assert not report.errors or all(f.rule != NUMERIC or f.pointer != WIDGET_ID
                                    for f in report.errors)
    lowered = [f for f in report.findings if f.rule == NUMERIC and f.severity == "hint"]
    assert all("(excepted: " in f.message for f in lowered)


def test_an_exception_on_a_shared_file_applies_there(
        excepted: tuple[Path, LintReport]) -> None:
    spec, report = excepted
    common = spec.parent.parent / "common" / "problem.yaml"
    assert _at(report, common, OPEN_OBJECT) == set()
    lowered = _at(report, common, OPEN_OBJECT, "hint")
    assert PROBLEM in lowered and all(p.startswith(PROBLEM) for p in lowered)
    assert f"{PROBLEM}/additionalProperties" in _at(
        report, common, "owasp:api3:2023-no-additionalProperties", "warning")


def test_reasonless_stale_and_duplicate_entries_are_errors(
        excepted: tuple[Path, LintReport]) -> None:
    _, report = excepted
    problems = _exception_problems(report)
    messages = "\n".join(f"{f.line} {f.message}" for f in problems)
    assert all(f.is_error for f in problems)
    assert len(problems) == 4, messages
    assert re.search(r"without a `reason`", messages)
    assert re.search(r"stale exception: owasp:api4:2023-array-limit", messages)
    assert re.search(r"second exception for .*one reason per rule and path", messages)
    assert re.search(r"nowhere\.yaml does not exist", messages)


def test_malformed_exceptions_files_are_errors(tmp_path: Path) -> None:
    file = tmp_path / "lint-exceptions.yaml"
    for text, expected in [
        ("- rule: x\n", "one key, `exceptions`"),
        ("exceptions:\n  - {rule: x, path: y, reason: z, until: 2027}\n", "unknown keys"),
        ("exceptions:\n  - {path: openapi/cart/v1.yaml, reason: z}\n", "without a `rule`"),
        ("exceptions:\n  - {rule: x, path: openapi/cart/v1.yaml#nope, reason: z}\n",
         "not a JSON pointer"),
    ]:
        file.write_text(text)
        entries, problems = exceptions.load(file, ROOT)
        assert entries == [] and len(problems) == 1, text
        assert expected in problems[0].message and problems[0].is_error


def _charter(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CHARTER), "gov", "lint", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=180, check=False)


def test_cli_exit_0_and_json_for_a_clean_spec() -> None:
    """The installed ``charter`` command, end to end."""
    result = _charter("--format", "json", str(FIXTURES / "good" / "v1.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(result.stdout)
    assert data["errors"] == 0 and data["findings"] == []
    assert data["specs"] == ["tests/governance/fixtures/lint/good/v1.yaml"]


def test_cli_exit_1_and_readable_report_on_errors(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    spec = _numeric_ids_spec(tmp_path)
    assert main(["gov", "lint", str(spec)]) == 1
    out = capsys.readouterr().out
    line = re.compile(rf"^{re.escape(str(spec))}:\d+ {re.escape(NUMERIC)} error .+$", re.M)
    assert line.search(out), out
    assert re.search(rf"^{re.escape(str(spec))}\s+\d+ errors", out, re.M)


def test_cli_exit_2_without_node_modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "governance" / "spectral").mkdir(parents=True)
    shutil.copy(ROOT / "governance/spectral/charter.yaml", tmp_path / "governance/spectral")
    monkeypatch.chdir(tmp_path)
    assert main(["gov", "lint"]) == 2
    assert "run `make node`" in capsys.readouterr().err


def test_cli_exit_2_for_a_missing_spec(tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gov", "lint", str(tmp_path / "nope.yaml")]) == 2
    assert "no such spec" in capsys.readouterr().err


def test_every_spec_passes_lint() -> None:
    """All of openapi/*/v*.yaml: 0 errors, with the reviewed exceptions applied."""
    report = lint()
    summary = {name: counts.get("error", 0) for name, counts in report.summary().items()}
    assert report.errors == [], f"lint errors per file: {summary}"
