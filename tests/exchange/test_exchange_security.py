"""The shared token matrix (tests/support/token_matrix.py) on every operation of the
exchange spec, enumerated from the spec: no token, each unusable header and each bad token
of the extended matrix (``alg: none``, HS256 with the public key, unknown ``kid``, missing
``sub``/``jti``, ``nbf`` in the future, another audience…) → the same 401 problem; a valid
token lacking ``exchange:read`` → 403; a valid one → 200."""

from __future__ import annotations

from typing import Any

from charter import specs
from charter.testing import SpecOperation, spec_operations
from tests.support.plugin import TokenMatrix, each_operation

SPEC = specs.load("exchange")
# The API's own scopes, and other services' read scopes: none of them reads rates.
ALL_SCOPES = {*specs.scopes(SPEC), "catalog:read", "payments:read"}

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


@each_operation("exchange")
def test_token_matrix(client: Any, token_matrix: TokenMatrix, op: SpecOperation) -> None:
    url = f"/v1{op.path}?{EXAMPLE_QUERIES[op.operation_id]}"

    def call(headers: dict[str, str]) -> Any:
        return client.request(op.method, url, headers=headers)

    token_matrix.run(op, call, all_scopes=ALL_SCOPES)
    response = call(token_matrix.valid_headers(op, role="customer"))
    assert response.status_code == 200, response.text
