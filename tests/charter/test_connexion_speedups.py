"""Connexion's per-operation work done once (charter/connexion_speedups.py): same answers."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from connexion.decorators.main import FlaskDecorator, WSGIDecorator

from charter import connexion_speedups
from charter.db import Database
from charter.service import create_app
from charter.testing import TokenFactory
from charter.wsgi_bridge import BufferedWSGIBridge

SPECS = Path(__file__).parent / "specs"


@pytest.fixture
def app(tmp_path: Path, tokens: TokenFactory) -> Any:
    db = Database(f"sqlite:///{tmp_path / 'probe.db'}")
    return create_app("probe", api_module="tests.charter.probe_api", db=db,
                      verifier=tokens.verifier(), spec_dir=SPECS)


def test_the_decorator_chain_is_built_once_per_operation(
        app: Any, tokens: TokenFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[str] = []
    original = WSGIDecorator.decorate

    def counting(self: WSGIDecorator, function: Any) -> Any:
        built.append(function.__name__)
        return original(self, function)

    monkeypatch.setattr(WSGIDecorator, "decorate", counting)
    client = app.test_client()
    headers = {"Authorization": f"Bearer {tokens.token(sub='al', scope='catalog:read')}"}
    for thing in (1, 2, 3, 4, 5):
        r = client.get(f"/v1/things/{thing}", headers=headers)
        assert r.status_code == 200
        assert r.json() == {"id": thing, "name": "probe", "owner": "al"}
    assert built == ["get_thing"]  # Connexion alone: once per request (5 times)


def test_services_serve_flask_through_the_buffered_bridge(app: Any) -> None:
    assert isinstance(app._middleware_app.asgi_app, BufferedWSGIBridge)


PARAMS: list[tuple[str, Any, dict[str, Any]]] = [
    ("query", 5, {"name": "n", "schema": {"type": "integer", "minimum": 1, "maximum": 9}}),
    ("query", 50, {"name": "n", "schema": {"type": "integer", "minimum": 1, "maximum": 9}}),
    ("query", "x", {"name": "n", "schema": {"type": "integer"}}),
    ("query", "eur", {"name": "c", "schema": {"type": "string", "enum": ["EUR", "USD"]}}),
    ("query", "EUR", {"name": "c", "schema": {"type": "string", "enum": ["EUR", "USD"]}}),
    ("path", "a" * 70, {"name": "id", "in": "path", "required": True,
                        "schema": {"type": "string", "maxLength": 64}}),
    ("header", None, {"name": "Idempotency-Key", "required": True,
                      "schema": {"type": "string"}}),
    ("query", None, {"name": "opt", "schema": {"type": "string"}}),
    ("query", None, {"name": "nul", "schema": {"type": "string", "nullable": True}}),
    ("query", "null", {"name": "nul", "schema": {"type": "string", "nullable": True}}),
    ("query", [1, "b"], {"name": "ids", "schema": {"type": "array",
                                                   "items": {"type": "integer"}}}),
    ("query", "2026-13-01", {"name": "d", "schema": {"type": "string", "format": "date"}}),
]


@pytest.mark.parametrize(("kind", "value", "param"), PARAMS)
def test_parameter_validation_answers_exactly_like_connexion(
        kind: str, value: Any, param: dict[str, Any]) -> None:
    expected = connexion_speedups.connexion_validate_parameter(kind, value, param)
    assert connexion_speedups._validate_parameter(kind, value, param) == expected
    # and again, from the cached validator
    assert connexion_speedups._validate_parameter(kind, value, param) == expected


def test_a_changed_parameter_object_gets_its_own_validator() -> None:
    first = {"name": "n", "schema": {"type": "integer", "maximum": 3}}
    assert connexion_speedups._validate_parameter("query", 5, first) is not None
    second = {"name": "n", "schema": {"type": "integer", "maximum": 9}}
    assert connexion_speedups._validate_parameter("query", 5, second) is None


def test_async_handlers_still_run_and_plain_ones_are_not_wrapped() -> None:
    decorator = FlaskDecorator()._sync_async_decorator

    async def handler(x: int) -> int:
        await asyncio.sleep(0)
        return x * 2

    def plain(x: int) -> int:
        return x + 1

    assert decorator(handler)(21) == 42
    assert decorator(plain) is plain
