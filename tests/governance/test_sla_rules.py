"""The generated Prometheus SLO rules: promtool accepts them, the unit tests in
deploy/prometheus/tests/ pass (fast burn pages, healthy traffic does not), no drift."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from governance.sla import model, rules
from tests.support.databases import skip_or_fail

TESTS = sorted((rules.OUT_DIR / "tests").glob("*.yaml"))


@pytest.fixture(scope="module")
def objectives() -> list[model.Objective]:
    return model.objectives(model.load())


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        skip_or_fail("promtool not on PATH (Debian's prometheus package; `make promtool`)")
    return found


def test_deploy_prometheus_matches_the_generator(objectives):
    stale = rules.drift(objectives)
    assert not stale, (f"deploy/prometheus/{', '.join(stale)} differ from governance/slas.yaml "
                       "and openapi/: run `charter gov sla alerts`")


def test_promtool_checks_the_generated_rules():
    files = [str(rules.OUT_DIR / rules.RULES_FILE), str(rules.OUT_DIR / rules.ALERTS_FILE)]
    done = subprocess.run([promtool(), "check", "rules", *files], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("SUCCESS") == 2


def test_promtool_unit_tests_pass():
    assert TESTS, "no promtool unit tests under deploy/prometheus/tests/"
    done = subprocess.run([promtool(), "test", "rules", *map(str, TESTS)], capture_output=True,
                          text=True, timeout=120, cwd=rules.OUT_DIR)
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_unit_tests_can_fail(tmp_path):
    """The unit tests bite: against rules whose fast tier never fires, they fail."""
    broken = rules.OUT_DIR / rules.ALERTS_FILE
    (tmp_path / "tests").mkdir()
    shutil.copy(rules.OUT_DIR / rules.RULES_FILE, tmp_path / rules.RULES_FILE)
    (tmp_path / rules.ALERTS_FILE).write_text(
        broken.read_text(encoding="utf-8").replace("> (14.4 *", "> (1000 *")
        .replace("> (6 *", "> (1000 *"), encoding="utf-8")
    test = next(t for t in TESTS if t.name.startswith("slo-"))  # not operational-alerts
    shutil.copy(test, tmp_path / "tests" / test.name)
    done = subprocess.run([promtool(), "test", "rules", f"tests/{test.name}"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode != 0
    assert "SLOBudgetBurnFast" in done.stdout + done.stderr


def test_every_objective_gets_the_workbook_burn_rates(objectives):
    alerts = rules.alerting_rules(objectives)["groups"]
    assert len(alerts) == len(objectives)
    for group, obj in zip(alerts, objectives, strict=True):
        by_name = {(r["alert"], r["labels"]["sli"]): r for r in group["rules"]}
        fast = by_name[("SLOBudgetBurnFast", "availability")]
        budget = f"{obj.error_budget:g}"
        assert f"ratio_rate1h{{service=\"{obj.service}\"" in fast["expr"]
        assert f"> (14.4 * {budget})" in fast["expr"] and f"> (6 * {budget})" in fast["expr"]
        assert "ratio_rate5m" in fast["expr"] and "ratio_rate30m" in fast["expr"]
        slow = by_name[("SLOBudgetBurnSlow", "latency")]
        assert "ratio_rate3d" in slow["expr"] and "> (1 * 0.01)" in slow["expr"]
        assert slow["labels"]["severity"] == "ticket"
        assert by_name[("SLOErrorRateCeiling", "availability")]["labels"]["severity"] == "page"


def test_latency_sli_reads_the_threshold_bucket(objectives):
    catalog_read = next(o for o in objectives if (o.service, o.slo_class) == ("catalog", "read"))
    expr = rules.ratio_expr(catalog_read, "latency", "5m")
    assert 'charter_http_request_duration_seconds_bucket{service="catalog"' in expr
    assert 'le="0.05"' in expr
    gateway_read = next(o for o in objectives if (o.service, o.slo_class) == ("gateway", "read"))
    assert 'charter_gateway_request_duration_seconds_bucket{operation=~"' in rules.ratio_expr(
        gateway_read, "latency", "5m")


def test_report_queries_are_valid_promql(objectives, tmp_path):
    """The report's PromQL parses (promtool checks it as recording rules)."""
    from governance.sla import report

    queries = [q for o in objectives for q in report.prometheus_queries(o, "1h")]
    path = tmp_path / "report-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "report", "rules": [
        {"record": f"report:query{i}", "expr": q} for i, q in enumerate(queries)]}]}))
    done = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(queries)} rules found" in done.stdout


def test_cli_writes_checks_and_shows(tmp_path, capsys):
    from charterctl.cli import main

    assert main(["gov", "sla", "alerts", "--check", "--out", str(tmp_path)]) == 1
    assert "run `charter gov sla alerts`" in capsys.readouterr().err
    assert main(["gov", "sla", "alerts", "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [rules.ALERTS_FILE, rules.RULES_FILE]
    assert main(["gov", "sla", "alerts", "--check", "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    assert main(["gov", "sla", "show"]) == 0
    out = capsys.readouterr().out
    assert "catalog        read      99.95 %       0.05 %        21.6 min/30d   50 ms" in out
