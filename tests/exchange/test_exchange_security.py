"""The token matrix on every operation of the exchange spec, enumerated from the spec."""

from __future__ import annotations

from typing import Any

import pytest

from charter import specs
from charter.testing import TokenFactory

SPEC = specs.load("exchange")
METHODS = ("get", "put", "post", "patch", "delete")

# A valid query per operationId (a new operation needs an entry: a test checks it).
EXAMPLE_QUERIES: dict[str, str] = {
    "get_rates": "from=EUR&to=USD",
    "convert_amount": "from=EUR&to=JPY&amount=1000",
}


def operations() -> list[tuple[str, str, str, dict[str, Any]]]:
    return [(item[m]["operationId"], m, path, item[m])
            for path, item in SPEC["paths"].items() for m in METHODS if m in item]


OPERATIONS = operations()


def required_scopes(op: dict[str, Any]) -> set[str]:
    return {name for req in op.get("security", []) for names in req.values() for name in names}


def test_every_operation_has_an_example_and_reads_with_exchange_read() -> None:
    ids = [op_id for op_id, *_ in OPERATIONS]
    assert len(ids) == len(set(ids)) and set(ids) == set(EXAMPLE_QUERIES)
    for op_id, method, _, op in OPERATIONS:
        assert method == "get" and required_scopes(op) == {"exchange:read"}, op_id
        assert op["summary"] and op["tags"] and "x-internal-callers" not in op, op_id
        for code in ("400", "401", "403", "404", "503"):
            assert code in op["responses"], (op_id, code)


def test_the_spec_follows_the_house_conventions() -> None:
    info = SPEC["info"]
    assert SPEC["openapi"] == "3.0.3" and info["version"] == "1.0.0"
    assert info["x-owner"] == "team-exchange" and info["x-lifecycle"] == "production"


@pytest.mark.parametrize(("op_id", "method", "path", "op"), OPERATIONS,
                         ids=[o[0] for o in OPERATIONS])
def test_token_matrix(client: Any, tokens: TokenFactory, op_id: str, method: str, path: str,
                      op: dict[str, Any]) -> None:
    url = f"/v1{path}?{EXAMPLE_QUERIES[op_id]}"

    def call(token: str | None) -> Any:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        return client.request(method.upper(), url, headers=headers)

    response = call(None)
    assert response.status_code == 401, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    for name, bad in tokens.bad_tokens("exchange:read").items():
        assert call(bad).status_code == 401, f"{op_id} with {name} token"
    response = call(tokens.token(scope="catalog:read payments:read"))
    assert response.status_code == 403, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    response = call(tokens.token(scope="exchange:read", role="customer"))
    assert response.status_code == 200, response.text
