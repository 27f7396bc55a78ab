"""Every spec in ``openapi/`` is served by exactly one component, every operation of it is
routed by the gateway to that component, and the component really serves it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from charter import config, specs
from charterctl.registry import COMPONENTS
from services.gateway.routes import RouteTable, discover

SPEC_APIS = sorted({api for api, _ in discover()})


def _example_path(template: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", template)


def test_every_spec_has_exactly_one_component() -> None:
    served = [c.name for c in COMPONENTS.values() if c.name in SPEC_APIS]
    assert sorted(served) == SPEC_APIS
    folders = {p.name for p in config.OPENAPI_DIR.iterdir()
               if p.is_dir() and not p.name.startswith(".")}  # .published: the baselines
    assert folders - {"common", "events"} == set(SPEC_APIS)  # events: AsyncAPI, no HTTP


def test_gateway_routes_every_operation_to_its_service() -> None:
    table = RouteTable.from_specs()
    count = 0
    for api, version in discover():
        doc = specs.load(api, version)
        for path, item in doc["paths"].items():
            for method, op in item.items():
                if not isinstance(op, dict) or "operationId" not in op:
                    continue
                match = table.match(method.upper(), f"/{api}/{version}{_example_path(path)}")
                assert not hasattr(match, "status"), (api, method, path, match)
                assert match.operation.operation_id == op["operationId"]  # type: ignore[union-attr]
                assert match.upstream_path == f"/{version}{_example_path(path)}"  # type: ignore[union-attr]
                count += 1
    assert count >= 40  # sanity: the specs were found


@pytest.mark.parametrize("api", SPEC_APIS)
def test_component_serves_every_operation_of_its_spec(
    api: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Build the component's app and check each operation resolves to a handler."""
    import importlib

    monkeypatch.setenv("CHARTER_MTLS", "0")  # default outbound clients, no certificates

    from charter.testing import TokenFactory

    module = importlib.import_module(f"services.{api}.app")
    from charter.db import Database

    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    app = module.create_app(db=db, verifier=TokenFactory().verifier())
    spec = app.test_client().get("/v1/openapi.json").json()
    served = {op["operationId"].rsplit(".", 1)[-1] for item in spec["paths"].values()
              for op in item.values() if isinstance(op, dict) and "operationId" in op}
    declared = {op["operationId"] for item in specs.load(api)["paths"].values()
                for op in item.values() if isinstance(op, dict) and "operationId" in op}
    assert served == declared
    handlers = importlib.import_module(f"services.{api}.api")
    missing = [op for op in declared if not callable(getattr(handlers, op, None))]
    assert not missing, f"{api}: no handler for {missing}"
