"""``charter.faults``: per-operation latency, error rate and unavailability windows in a
real Connexion app built by ``create_app``, the live profile shared by workers, and the
development-only admin endpoint."""

from __future__ import annotations

import json
import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from charter import faults
from charter.clock import rfc3339, utcnow
from charter.db import Database
from charter.security import mtls
from charter.service import create_app
from charter.testing import TokenFactory
from tests.support.polling import wait_until

SPECS = Path(__file__).parent / "specs"
THING = "/v1/things/7"


@pytest.fixture
def make_client(tmp_path: Path, tokens: TokenFactory) -> Any:
    """``make_client(identity=None)``: a fresh probe app (a new "worker") and its client;
    ``identity`` puts a verified client-certificate identity in every request's scope."""

    def make(identity: str | None = None) -> TestClient:
        db = Database(f"sqlite:///{tmp_path / 'probe.db'}")
        app = create_app("probe", api_module="tests.charter.probe_api", db=db,
                         verifier=tokens.verifier(), spec_dir=SPECS)
        if identity is None:
            return TestClient(app)
        tls = mtls.tls_extension(None)
        tls[mtls.IDENTITY_KEY] = identity
        return TestClient(mtls.TLSScopeApp(app, tls))

    return make


@pytest.fixture
def auth(tokens: TokenFactory) -> dict[str, str]:
    return {"Authorization": "Bearer "
            + tokens.token(sub="alice", scope="catalog:read catalog:write")}


def profile(monkeypatch: pytest.MonkeyPatch, doc: dict[str, Any]) -> None:
    monkeypatch.setenv(faults.ENV_PROFILE, json.dumps(doc))


def assert_injected(response: Any) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["x-charter-fault"] == "injected"
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["type"].endswith("/service-unavailable")


def test_error_rate_one_fails_that_operation_only(
        make_client: Any, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    profile(monkeypatch, {"get_thing": {"error_rate": 1.0}})
    client = make_client()
    for _ in range(3):
        assert_injected(client.get(THING, headers=auth))
    created = client.post("/v1/things", json={"name": "x"}, headers=auth)
    assert created.status_code == 201
    assert "x-charter-fault" not in created.headers
    assert client.get("/health/live").status_code == 200
    page = client.get("/metrics").text  # injected answers are counted like real ones
    assert ('operation="tests.charter.probe_api.get_thing",service="probe",status="503"} 3.0'
            in page)


def test_added_latency(make_client: Any, auth: dict[str, str],
                       monkeypatch: pytest.MonkeyPatch) -> None:
    profile(monkeypatch, {"get_thing": {"latency_ms": "300-350"}})
    client = make_client()
    started = time.monotonic()
    response = client.get(THING, headers=auth)
    assert response.status_code == 200
    assert time.monotonic() - started >= 0.3


def test_unavailability_windows(make_client: Any, auth: dict[str, str],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    profile(monkeypatch, {"*": {"unavailable": {"for_s": 60}}})
    client = make_client()
    assert_injected(client.get(THING, headers=auth))
    assert_injected(client.post("/v1/things", json={"name": "x"}, headers=auth))
    assert client.get("/health/ready").status_code == 200  # never faulted
    assert client.get("/metrics").status_code == 200
    past = utcnow() - timedelta(hours=1)
    profile(monkeypatch, {"*": {"unavailable": [
        {"from": rfc3339(past - timedelta(hours=1)), "until": rfc3339(past)}]}})
    assert make_client().get(THING, headers=auth).status_code == 200  # window is over


def test_profile_from_a_yaml_file(make_client: Any, auth: dict[str, str], tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "faults.yaml"
    path.write_text("get_thing:\n  error_rate: 1\n")
    monkeypatch.setenv(faults.ENV_FILE, str(path))
    assert_injected(make_client().get(THING, headers=auth))


@pytest.mark.parametrize("doc", [
    {"get_thing": {"error_rate": 2}},
    {"get_thing": {"latency_ms": "fast"}},
    {"get_thing": {"latency_ms": "200-100"}},
    {"get_thing": {"crash": True}},
    {"get_thing": {"unavailable": {"from": "yesterday", "until": "today"}}},
    ["get_thing"],
])
def test_malformed_profiles_are_refused(doc: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(faults.FaultConfigError):
        faults.FaultProfile.parse(doc)
    profile(monkeypatch, doc)
    with pytest.raises(faults.FaultConfigError):
        faults.configured_profile()  # a service refuses to start with it


def test_a_change_of_the_live_file_reaches_every_worker(
        make_client: Any, auth: dict[str, str]) -> None:
    first, second = make_client(identity="charter-cli"), make_client()
    assert second.get(THING, headers=auth).status_code == 200
    changed = first.put(faults.ADMIN_PATH, json={"get_thing": {"error_rate": 1}})
    assert changed.status_code == 200, changed.text
    assert_injected(first.get(THING, headers=auth))  # at once in the worker that was asked

    def faulted() -> bool:
        return second.get(THING, headers=auth).status_code == 503

    wait_until(faulted, timeout=5, interval=0.1, what="the other worker to follow")
    assert first.delete(faults.ADMIN_PATH).status_code == 204
    wait_until(lambda: not faulted(), timeout=5, interval=0.1, what="the fault to clear")


def test_set_faults_writes_the_shared_file(make_client: Any, auth: dict[str, str]) -> None:
    client = make_client()
    assert client.get(THING, headers=auth).status_code == 200
    path = faults.set_faults("probe", {"*": {"unavailable": {"for_s": 60}}})
    written = json.loads(path.read_text())
    assert written["*"]["unavailable"][0].keys() == {"from", "until"}  # absolute times
    wait_until(lambda: client.get(THING, headers=auth).status_code == 503, timeout=5,
               interval=0.1, what="the profile to apply")
    with pytest.raises(ValueError):
        faults.set_faults("../etc", None)


def test_admin_endpoint_for_the_operator(make_client: Any) -> None:
    client = make_client(identity="charter-cli")
    empty = client.get(faults.ADMIN_PATH)
    assert empty.status_code == 200
    assert empty.json() == {"service": "probe", "source": "none", "profile": {}}
    put = client.put(faults.ADMIN_PATH, json={"get_thing": {"latency_ms": 5}})
    assert put.status_code == 200
    current = client.get(faults.ADMIN_PATH).json()
    assert current["source"] == "live-file"
    assert current["profile"]["get_thing"]["latency_ms"] == 5
    bad = client.put(faults.ADMIN_PATH, json={"get_thing": {"error_rate": -1}})
    assert bad.status_code == 400
    assert bad.headers["content-type"].startswith("application/problem+json")
    assert client.get(faults.ADMIN_PATH).json()["profile"]["get_thing"]["latency_ms"] == 5
    assert client.post(faults.ADMIN_PATH, json={}).status_code == 405


@pytest.mark.parametrize("identity", [None, "cart", "gateway"])
def test_admin_endpoint_refuses_other_callers(make_client: Any, identity: str | None) -> None:
    client = make_client(identity=identity)
    for method in ("GET", "PUT", "DELETE"):
        response = client.request(method, faults.ADMIN_PATH,
                                  json={"*": {"error_rate": 1}} if method == "PUT" else None)
        assert response.status_code == 403, (method, response.text)
    assert not faults.live_path("probe").exists()  # nothing was written


def test_admin_endpoint_does_not_exist_in_production(
        make_client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHARTER_ENV", "production")
    monkeypatch.setenv("AUTH_ISSUER", "https://auth.charter.test")
    client = make_client(identity="charter-cli")
    for method in ("GET", "PUT", "DELETE"):
        response = client.request(method, faults.ADMIN_PATH,
                                  json={"*": {"error_rate": 1}} if method == "PUT" else None)
        assert response.status_code == 404, (method, response.status_code)
    assert client.get("/_charter/nothing").status_code == 404
    assert not faults.live_path("probe").exists()


def test_inert_without_a_profile_in_production(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHARTER_ENV", "production")
    middleware = faults.FaultMiddleware(lambda *_a: None, service="probe")  # type: ignore[arg-type]
    assert middleware.state is None and not middleware.admin


def test_the_live_file_is_stat_at_most_every_half_second() -> None:
    clock = [100.0]
    calls: list[str] = []

    def counting_stat(path: Path) -> Any:
        calls.append(str(path))
        return os.stat(path)

    state = faults.FaultState("probe", None, monotonic=lambda: clock[0], stat=counting_stat)
    for _ in range(100):
        assert state.current() is None
    assert len(calls) == 1
    clock[0] += faults.CHECK_INTERVAL
    state.current()
    assert len(calls) == 2
