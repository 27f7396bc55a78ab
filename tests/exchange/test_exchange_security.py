"""The token matrix on every operation of the exchange spec, enumerated from the spec."""

from __future__ import annotations

from typing import Any

import pytest

from charter import specs
from charter.testing import SpecOperation, TokenFactory, assert_token_refusals, spec_operations

SPEC = specs.load("exchange")

# A valid query per operationId (a new operation needs an entry: a test checks it).
EXAMPLE_QUERIES: dict[str, str] = {
    "get_rates": "from=EUR&to=USD",
    "convert_amount": "from=EUR&to=JPY&amount=1000",
}


OPERATIONS = spec_operations("exchange")


def test_every_operation_has_an_example_and_reads_with_exchange_read() -> None:
    ids = [op.operation_id for op in OPERATIONS]
    assert len(ids) == len(set(ids)) and set(ids) == set(EXAMPLE_QUERIES)
    for op in OPERATIONS:
        op_id, spec = op.operation_id, op.spec
        assert op.method == "GET" and op.scopes == {"exchange:read"}, op_id
        assert spec["summary"] and spec["tags"] and "x-internal-callers" not in spec, op_id
        for code in ("400", "401", "403", "404", "503"):
            assert code in spec["responses"], (op_id, code)


def test_the_spec_follows_the_house_conventions() -> None:
    info = SPEC["info"]
    assert SPEC["openapi"] == "3.0.3" and info["version"] == "1.0.0"
    assert info["x-owner"] == "team-exchange" and info["x-lifecycle"] == "production"


@pytest.mark.parametrize("op", OPERATIONS, ids=str)
def test_token_matrix(client: Any, tokens: TokenFactory, op: SpecOperation) -> None:
    url = f"/v1{op.path}?{EXAMPLE_QUERIES[op.operation_id]}"

    def call(token: str | None) -> Any:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        return client.request(op.method, url, headers=headers)

    assert_token_refusals(call, tokens, scope="exchange:read",
                          forbidden=tokens.token(scope="catalog:read payments:read"),
                          label=op.operation_id)
    response = call(tokens.token(scope="exchange:read", role="customer"))
    assert response.status_code == 200, response.text
