"""``charter up --replicas``: the argument, the instances' ports and URLs, what each process
gets in its environment (``charterctl.replicas``, ``charterctl.runner``). Starting them
for real is ``tests/e2e/test_failover.py``."""

from __future__ import annotations

from pathlib import Path

import pytest

from charterctl import cli, replicas, runner
from charterctl.registry import COMPONENTS
from charterctl.replicas import ReplicaError

KNOWN = set(COMPONENTS)


@pytest.fixture(autouse=True)
def default_ports(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(COMPONENTS):
        for suffix in ("_PORT", "_URL", "_URLS", "_REPLICA_PORTS"):
            monkeypatch.delenv(f"{name.upper()}{suffix}", raising=False)
    monkeypatch.setenv("CHARTER_MTLS", "1")
    monkeypatch.setenv("CHARTER_VAR_DIR", str(tmp_path / "var"))


def test_parse_counts() -> None:
    assert replicas.parse("catalog=2, cart=3,exchange=2", KNOWN) == {
        "catalog": 2, "cart": 3, "exchange": 2}
    assert replicas.parse("", KNOWN) == {} == replicas.parse(None, KNOWN)


@pytest.mark.parametrize(("spec", "said"), [
    ("shop=2", "unknown service 'shop'"),
    ("gateway=2", "gateway runs as one instance"),
    ("auth=2", "auth runs as one instance"),
    ("catalog=0", "between 1 and 8"),
    ("catalog=9", "between 1 and 8"),
    ("catalog=two", "must be an integer"),
    ("catalog", "is not SERVICE=COUNT"),
    ("catalog=2,catalog=3", "named twice"),
])
def test_parse_refuses(spec: str, said: str) -> None:
    with pytest.raises(ReplicaError, match=said):
        replicas.parse(spec, KNOWN)


def test_charter_up_refuses_a_bad_argument_with_exit_2(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["up", "--replicas", "catalog=99"]) == 2
    assert "catalog=99: the count must be between 1 and 8" in capsys.readouterr().err


def test_ports_derive_from_the_service_port_or_are_given() -> None:
    found = replicas.instances("catalog", 3)
    assert [(i.label, i.port, i.url) for i in found] == [
        ("catalog", 8101, "https://127.0.0.1:8101"),
        ("catalog#2", 8111, "https://127.0.0.1:8111"),
        ("catalog#3", 8121, "https://127.0.0.1:8121")]
    given = replicas.instances("exchange", 2, {"EXCHANGE_REPLICA_PORTS": "9200,9201"})
    assert [i.port for i in given] == [8105, 9200]
    with pytest.raises(ReplicaError, match="names 1 ports; 2 needed"):
        replicas.instances("exchange", 3, {"EXCHANGE_REPLICA_PORTS": "9200"})


def test_plan_env_and_port_clashes(monkeypatch: pytest.MonkeyPatch) -> None:
    plan = replicas.plan(["auth", "catalog", "exchange", "gateway"],
                         {"catalog": 2, "exchange": 2})
    assert replicas.urls_env(plan) == {
        "CATALOG_URLS": "https://127.0.0.1:8101,https://127.0.0.1:8111",
        "EXCHANGE_URLS": "https://127.0.0.1:8105,https://127.0.0.1:8115"}
    with pytest.raises(ReplicaError, match="cart not started"):
        replicas.plan(["catalog"], {"cart": 2})
    monkeypatch.setenv("CART_PORT", "8111")
    with pytest.raises(ReplicaError, match="would both listen on port 8111"):
        replicas.plan(["catalog", "cart"], {"catalog": 2})


def test_each_instance_gets_its_port_number_and_own_metrics_and_log_files(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHARTER_MTLS", "0")  # no certificates needed for the command line
    comp = COMPONENTS["catalog"]
    second = replicas.instances("catalog", 2)[1]
    assert runner.command(comp, 1, second.port)[runner.command(comp, 1).index("--port") + 1] \
        == "8111"
    assert runner.command(comp, 2, second.port)[-1] == "8111"  # SO_REUSEPORT workers
    env = runner.child_env(comp, 2, second, 2)
    assert (env["CHARTER_INSTANCE"], env["CHARTER_REPLICAS"]) == ("2", "2")
    assert env["PROMETHEUS_MULTIPROC_DIR"].endswith("metrics/catalog.2")
    assert "CHARTER_INSTANCE" not in runner.child_env(comp, 1)
    assert runner.metrics_dir(comp, 1).name == "catalog"
