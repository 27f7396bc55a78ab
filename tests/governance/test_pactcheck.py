"""``charter contracts check``: pacts checked against the provider's spec.

The fixture pacts (``fixtures/pactcheck/pacts``: one written by pact-python 4 in the v4
layout, one in the v3 layout) are valid for ``fixtures/pactcheck/openapi/shop/v1.yaml``;
each failing case changes one thing in a copy of the v4 pact.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from charterctl.cli import main
from governance.pactcheck import check

FIXTURES = Path(__file__).parent / "fixtures" / "pactcheck"
OPENAPI = FIXTURES / "openapi"
PACTS = FIXTURES / "pacts"
ROOT = Path(__file__).resolve().parents[2]

Pact = dict[str, Any]


def _v4() -> Pact:
    pact: Pact = json.loads((PACTS / "web-shop.json").read_text(encoding="utf-8"))
    return pact


def _interaction(pact: Pact, description: str) -> dict[str, Any]:
    return next(i for i in pact["interactions"] if i["description"] == description)


def _check(tmp_path: Path, edit: Callable[[Pact], None]) -> list[check.Result]:
    pact = copy.deepcopy(_v4())
    edit(pact)
    path = tmp_path / f"{pact['consumer']['name']}-{pact['provider']['name']}.json"
    path.write_text(json.dumps(pact), encoding="utf-8")
    return check.check_pact(path, OPENAPI)


def _errors(results: list[check.Result]) -> list[str]:
    return [e for r in results for e in r.errors]


PRODUCT = "a request for a product"
SEARCH = "a search"
ADD = "an item added to the cart"


def _set(description: str, *keys: str, value: Any) -> Callable[[Pact], None]:
    def edit(pact: Pact) -> None:
        node = _interaction(pact, description)
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value
    return edit


def _response_body(description: str, **fields: Any) -> Callable[[Pact], None]:
    def edit(pact: Pact) -> None:
        _interaction(pact, description)["response"]["body"]["content"].update(fields)
    return edit


def _request_body(**fields: Any) -> Callable[[Pact], None]:
    def edit(pact: Pact) -> None:
        _interaction(pact, ADD)["request"]["body"]["content"].update(fields)
    return edit


def test_valid_pacts_pass(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["contracts", "check", str(PACTS), "--openapi-dir", str(OPENAPI)]) == 0
    out = capsys.readouterr().out
    assert "6 interaction(s), 0 failed" in out
    assert "[get_product (GET /products/{product_id})]" in out


@pytest.mark.parametrize(("edit", "expected"), [
    pytest.param(_response_body(PRODUCT, colour="green"),
                 "response body $: Additional properties are not allowed ('colour' was "
                 "unexpected)", id="field-not-in-spec-additionalProperties-false"),
    pytest.param(_response_body(SEARCH, total_pages=3),
                 "response body $.total_pages: not in the spec",
                 id="field-not-in-spec-open-schema"),
    pytest.param(lambda p: _interaction(p, SEARCH)["response"]["body"]["content"]["items"][0]
                 .update(colour="green"),
                 "response body $.items[0]: Additional properties are not allowed",
                 id="nested-field-not-in-spec"),
    pytest.param(_response_body(PRODUCT, id="seven"),
                 "response body $.id: 'seven' is not of type 'integer'",
                 id="response-field-wrong-type"),
    pytest.param(_set(PRODUCT, "response", "status", value=201),
                 "response: status 201 is not declared (spec: 200, 404)", id="wrong-status"),
    pytest.param(_set(PRODUCT, "request", "path", value="/v1/baskets/7"),
                 "path /v1/baskets/7 matches no path of v1.yaml", id="unknown-path"),
    pytest.param(_set(PRODUCT, "request", "path", value="/v2/products/7"),
                 "path /v2/products/7 is under no spec base path (/v1)", id="unknown-version"),
    pytest.param(_set(PRODUCT, "request", "method", value="DELETE"),
                 "DELETE is not an operation of /products/{product_id} (spec allows GET)",
                 id="wrong-method"),
    pytest.param(_set(PRODUCT, "request", "path", value="/v1/products/abc"),
                 "request path parameter product_id $: 'abc' is not of type 'integer'",
                 id="bad-path-parameter"),
    pytest.param(_set(SEARCH, "request", "query", value={"page": ["1"], "sort": ["name"]}),
                 "request: query parameter sort is not in the spec", id="unknown-query"),
    pytest.param(_set(SEARCH, "request", "query", value={"page": ["0"]}),
                 "request query parameter page $: 0 is less than the minimum of 1",
                 id="query-out-of-range"),
    pytest.param(_request_body(quantity=50),
                 "request body $.quantity: 50 is greater than the maximum of 10",
                 id="bad-request-body"),
    pytest.param(lambda p: _interaction(p, ADD)["request"]["body"]["content"].pop("quantity"),
                 "request body $: 'quantity' is a required property",
                 id="request-body-missing-field"),
    pytest.param(_request_body(gift=True),
                 "request body $: Additional properties are not allowed ('gift' was "
                 "unexpected)", id="request-body-extra-field"),
    pytest.param(lambda p: _interaction(p, ADD)["request"].pop("body"),
                 "request: the spec requires a body, the pact sends none", id="no-body"),
    pytest.param(lambda p: _interaction(p, ADD)["request"]["headers"].pop("Idempotency-Key"),
                 "request: required header parameter Idempotency-Key is missing",
                 id="missing-header-parameter"),
    pytest.param(_set(ADD, "response", "headers", "X-Cart-Total", value=["12"]),
                 "response: header x-cart-total is not in the spec", id="undocumented-header"),
    pytest.param(_set(PRODUCT, "response", "headers", "Content-Type", value=["text/html"]),
                 "response: content type text/html not declared (spec: application/json)",
                 id="wrong-content-type"),
])
def test_mismatch_is_reported(tmp_path: Path, edit: Callable[[Pact], None],
                              expected: str) -> None:
    errors = _errors(_check(tmp_path, edit))
    assert any(e.startswith(expected) for e in errors), errors


def test_only_the_broken_interaction_fails(tmp_path: Path) -> None:
    results = _check(tmp_path, _response_body(PRODUCT, colour="green"))
    assert [(r.description, r.ok) for r in results] == [
        (PRODUCT, False), ("a request for a product that does not exist", True),
        (SEARCH, True), (ADD, True)]


def test_a_response_may_list_fewer_fields_than_the_spec_requires(tmp_path: Path) -> None:
    """Pact ignores extra provider fields: a consumer lists only what it reads."""
    results = _check(tmp_path, lambda p: _interaction(p, PRODUCT)["response"]["body"][
        "content"].pop("price"))
    assert _errors(results) == []


def test_nullable_values_are_valid(tmp_path: Path) -> None:
    assert _errors(_check(tmp_path, _response_body(PRODUCT, price=None))) == []
    errors = _errors(_check(tmp_path, _response_body(PRODUCT, name=None)))
    assert errors == ["response body $.name: None is not of type 'string'"]


def test_missing_token_is_a_warning(tmp_path: Path) -> None:
    results = _check(tmp_path, lambda p: _interaction(p, PRODUCT)["request"].pop("headers"))
    product = results[0]
    assert product.ok
    assert product.warnings == ["request: no Authorization header, the operation requires "
                                "a token (the provider answers 401)"]


def test_message_interactions_are_skipped(tmp_path: Path) -> None:
    results = _check(tmp_path, lambda p: p["interactions"].append(
        {"type": "Asynchronous/Messages", "description": "an order event",
         "contents": {"content": {}}}))
    assert results[-1].skipped == "not an HTTP interaction (Asynchronous/Messages)"
    assert all(r.ok for r in results)


def test_unknown_provider_fails(tmp_path: Path) -> None:
    results = _check(tmp_path, lambda p: p["provider"].update(name="nosuch"))
    assert _errors(results)[0] == "no spec for provider 'nosuch' (openapi/nosuch/v<N>.yaml)"


def test_file_name_must_name_consumer_and_provider(tmp_path: Path) -> None:
    path = tmp_path / "shop.json"
    path.write_text(json.dumps(_v4()), encoding="utf-8")
    [result] = check.check_pact(path, OPENAPI)
    assert result.errors == ["file name should be web-shop.json (its consumer and provider)"]


def test_provider_name_cannot_leave_the_spec_folder(tmp_path: Path) -> None:
    results = _check(tmp_path, lambda p: p["provider"].update(name="..%2fopenapi%2fshop"))
    assert _errors(results)[0] == "provider name '..%2fopenapi%2fshop' is not a component name"


def test_command_exits_1_and_names_the_field(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    pact = _v4()
    _response_body(SEARCH, total_pages=3)(pact)
    (tmp_path / "web-shop.json").write_text(json.dumps(pact), encoding="utf-8")
    assert main(["contracts", "check", str(tmp_path), "--openapi-dir", str(OPENAPI)]) == 1
    out = capsys.readouterr().out
    assert "FAIL  web-shop.json: 'a search'" in out
    assert "$.total_pages: not in the spec" in out
    assert out.rstrip().endswith("4 interaction(s), 1 failed")


def test_command_json_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["contracts", "check", str(PACTS / "mobile-shop.json"), "--openapi-dir",
                 str(OPENAPI), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True
    assert [i["operation"] for i in report["interactions"]] == [
        "get_product (GET /products/{product_id})", "list_products (GET /products)"]


def test_no_pact_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["contracts", "check", str(tmp_path), "--openapi-dir", str(OPENAPI)]) == 0
    assert main(["contracts", "check", str(tmp_path), "--openapi-dir", str(OPENAPI),
                 "--require"]) == 2
    assert "no pact file" in capsys.readouterr().err


def test_the_committed_pacts_hold_against_the_specs(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert list((ROOT / "contracts" / "pacts").glob("*.json")), "the pacts are committed"
    code = main(["contracts", "check", "--require"])
    out = capsys.readouterr().out
    assert code == 0, out
