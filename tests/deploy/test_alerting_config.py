"""The Prometheus, Alertmanager and rule files in deploy/ as the real tools read them
(promtool, amtool from Debian's packages), and the test variant of the rules."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from charterctl import pki
from tests.deploy import alerting
from tests.support.databases import skip_or_fail
from tests.support.platform import COMPONENTS

PROMETHEUS = alerting.DEPLOY / "prometheus"


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        skip_or_fail(f"{name} not on PATH (Debian's prometheus / prometheus-alertmanager; "
                     "`make alerting`)")
    return found


def run(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=cwd)


def test_prometheus_config_is_valid_with_the_platform_pki(tmp_path: Path) -> None:
    """promtool reads the compose config, its rule files and the `prometheus` identity's
    certificate (paths moved from /etc/prometheus/pki to a fresh development PKI)."""
    directory = pki.init_pki(tmp_path / "pki")
    doc = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    job = next(j for j in doc["scrape_configs"] if j["job_name"] == "charter")
    assert job["tls_config"]["cert_file"].endswith(f"/{pki.SCRAPER_IDENTITY}.pem")
    job["tls_config"] = {k: str(directory / Path(v).name) for k, v in job["tls_config"].items()}
    for name in doc["rule_files"]:
        shutil.copy(PROMETHEUS / name, tmp_path / name)
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(doc))
    done = run(tool("promtool"), "check", "config", str(tmp_path / "prometheus.yml"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("SUCCESS") == 2 + len(doc["rule_files"]), done.stdout
    targets = {s["labels"]["service"] for s in job["static_configs"]}
    assert targets == set(COMPONENTS)


def test_alertmanager_config_is_valid_and_reads_the_url_from_a_file() -> None:
    path = alerting.DEPLOY / "alertmanager" / "alertmanager.yml"
    done = run(tool("amtool"), "check-config", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    text = path.read_text()
    assert "hooks.slack.com" not in text and "api_url:" not in text  # no URL committed
    slack = yaml.safe_load(text)["receivers"][0]["slack_configs"][0]
    assert slack["api_url_file"] and slack["send_resolved"] is True


def test_operational_alert_unit_tests_can_fail(tmp_path: Path) -> None:
    """The promtool unit tests bite: with the DLQ budget at 1 % instead of 0.1 %, the
    DeadLettersAboveBudget case fails."""
    rules = (PROMETHEUS / "operational-alerts.yaml").read_text()
    assert "0.001 * clamp_min" in rules
    (tmp_path / "operational-alerts.yaml").write_text(
        rules.replace("0.001 * clamp_min", "0.01 * clamp_min"))
    (tmp_path / "tests").mkdir()
    shutil.copy(PROMETHEUS / "tests" / "operational-alerts.test.yaml", tmp_path / "tests")
    done = run(tool("promtool"), "test", "rules", "tests/operational-alerts.test.yaml",
               cwd=tmp_path)
    assert done.returncode != 0
    assert "DeadLettersAboveBudget" in done.stdout + done.stderr


def test_short_windows_keep_names_and_thresholds() -> None:
    original = yaml.safe_load((PROMETHEUS / "slo-rules.yaml").read_text())
    short = yaml.safe_load(alerting.short_windows((PROMETHEUS / "slo-rules.yaml").read_text()))
    before = [r for g in original["groups"] for r in g["rules"]]
    after = [r for g in short["groups"] for r in g["rules"]]
    assert [r["record"] for r in before] == [r["record"] for r in after]
    assert [r["labels"] for r in before] == [r["labels"] for r in after]
    assert any("[5m]" in r["expr"] for r in before)
    for rule in after:
        assert not any(f"[{w}]" in rule["expr"] for w in alerting.SHORT), rule["expr"]
    alerts = yaml.safe_load(alerting.short_windows((PROMETHEUS / "slo-alerts.yaml").read_text()))
    fors = {r.get("for") for g in alerts["groups"] for r in g["rules"]}
    assert fors <= {None, "1s"}
