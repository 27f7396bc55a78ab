"""Ownership rules of :class:`Principal`."""

import pytest

from charter.problems import Forbidden
from charter.security.principal import Principal


def test_customer_sees_only_own() -> None:
    alice = Principal.from_token_info({"sub": "alice", "role": "customer", "scope": ["a"]})
    assert alice.can_access("alice") and not alice.can_access("bob")
    with pytest.raises(Forbidden):
        alice.require_privileged()


@pytest.mark.parametrize("role", ["staff", "admin", "service"])
def test_privileged_roles_see_all(role: str) -> None:
    p = Principal.from_token_info({"sub": "x", "role": role, "scope": "a b"})
    assert p.can_access("anyone") and p.scopes == {"a", "b"}
    p.require_privileged()


def test_plain_client_acts_as_itself() -> None:
    cli = Principal.from_token_info({"sub": "demo-cli", "client_id": "demo-cli", "scope": ""})
    assert cli.role is None and cli.can_access("demo-cli") and not cli.can_access("alice")
