"""The spec-driven token matrix: every operation refuses every bad token the same way.

For one operation (a :class:`charter.testing.SpecOperation`, or anything with
``operation_id`` and ``scopes``) the matrix is:

- no ``Authorization`` header, and each unusable one (``Basic …``, an empty ``Bearer``…)
  → 401 with exactly ``token_problem("missing")``;
- each bad token of :meth:`TokenFactory.bad_tokens` (bad signature, expired, wrong
  audience or issuer, ``alg: none``, HS256 keyed with the public key, unknown ``kid``,
  missing ``sub``/``jti``, ``nbf`` in the future, another audience of the same issuer…),
  carrying the operation's scopes → 401 with exactly ``token_problem("expired")`` for
  the expired one and ``token_problem("invalid")`` for every other (same body, same
  ``WWW-Authenticate``: a client learns nothing from the difference);
- a valid token lacking the scope (no scope at all, an unrelated one, and every other
  scope of the API when ``all_scopes`` is given) → 403 with exactly
  ``scope_problem(op.scopes)`` (body, and ``WWW-Authenticate`` with
  ``error="insufficient_scope"`` and the required ``scope``; the token's own scopes are
  never echoed).

``call(headers)`` makes the operation's request with those extra headers and returns the
response (Starlette/httpx or Flask test client responses). :meth:`TokenMatrix.run` runs
it synchronously, :meth:`TokenMatrix.arun` with an ``async`` call; both collect every
failure before asserting, so one run reports all broken cases of the operation.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest

from charter.security.tokens import TokenProblem, scope_problem, token_problem
from charter.testing import BAD_AUTHORIZATION_HEADERS, TokenFactory, spec_operations
from tests.support.auth_headers import bearer
from tests.support.problems import PROBLEM

Headers = dict[str, str]


class Operation(Protocol):
    """What the matrix needs to know about an operation."""

    @property
    def operation_id(self) -> str: ...

    @property
    def scopes(self) -> frozenset[str]: ...


@dataclass(frozen=True)
class MatrixCase:
    """One row of the matrix: extra request headers and the expected answer."""

    name: str
    headers: Headers
    expected: TokenProblem  # the exact body and ``WWW-Authenticate`` to answer
    reason: str | None = None  # ``token_problem`` reason of a 401

    @property
    def status(self) -> int:
        """401 or 403."""
        return self.expected.status


def each_operation(api: str, version: str = "v1", *, internal: bool = True,
                   spec_dir: Path | None = None) -> pytest.MarkDecorator:
    """Parametrise a test over every operation of ``openapi/<api>/<version>.yaml`` (``op``).

    ``internal=False`` leaves out operations with ``x-internal-callers``; ``spec_dir``
    reads the spec from another folder than ``openapi/``.
    """
    ops = [op for op in spec_operations(api, version, spec_dir)
           if internal or not op.internal_callers]
    return pytest.mark.parametrize("op", ops, ids=str)


@dataclass
class TokenMatrix:
    """Builds and checks the matrix with one :class:`TokenFactory` (the app must trust it)."""

    tokens: TokenFactory

    def cases(self, op: Operation, *, all_scopes: Iterable[str] = (),
              claims: Mapping[str, Any] | None = None) -> list[MatrixCase]:
        """Every row for ``op``; ``claims`` go into the 403 tokens (e.g. ``role``)."""
        scope = " ".join(sorted(op.scopes))
        rows = [_refused("no_token", {}, "missing")]
        rows += [_refused(f"header {header!r}", {"Authorization": header}, "missing")
                 for header in BAD_AUTHORIZATION_HEADERS]
        rows += [_refused(name, bearer(token), "expired" if name == "expired" else "invalid")
                 for name, token in self.tokens.bad_tokens(scope).items()]
        lacking = {"no_scope": "", "unrelated_scope": "unrelated:scope"}
        others = set(all_scopes) - set(op.scopes)
        if others:
            lacking["other_scopes"] = " ".join(sorted(others))
        extra = dict(claims or {})
        forbidden = scope_problem(op.scopes)
        rows += [MatrixCase(name, bearer(self.tokens.token(scope=value, **extra)), forbidden)
                 for name, value in lacking.items()]
        return rows

    def check(self, case: MatrixCase, response: Any) -> str | None:
        """What is wrong with ``response`` for ``case`` (``None``: nothing)."""
        status = response.status_code
        body = _json(response)
        if status != case.status:
            return f"{case.name}: {status} instead of {case.status} {body!r}"
        if not response.headers.get("content-type", "").startswith(PROBLEM):
            return f"{case.name}: not problem+json ({response.headers.get('content-type')})"
        expected = case.expected
        if body != expected.body():
            return f"{case.name}: body {body!r} instead of {expected.body()!r}"
        challenge = response.headers.get("www-authenticate")
        if challenge != expected.challenge:
            return (f"{case.name}: WWW-Authenticate {challenge!r} instead of "
                    f"{expected.challenge!r}")
        return None

    def _verdict(self, op: Operation, rows: list[MatrixCase], answers: list[Any]) -> None:
        failures = [f for row, answer in zip(rows, answers, strict=True)
                    if (f := self.check(row, answer))]
        assert not failures, f"{op.operation_id}:\n  " + "\n  ".join(failures)

    def run(self, op: Operation, call: Callable[[Headers], Any], *,
            all_scopes: Iterable[str] = (), claims: Mapping[str, Any] | None = None) -> None:
        """Run every row on ``op`` through ``call``; assert with every failure listed."""
        rows = self.cases(op, all_scopes=all_scopes, claims=claims)
        self._verdict(op, rows, [call(dict(row.headers)) for row in rows])

    async def arun(self, op: Operation, call: Callable[[Headers], Awaitable[Any]], *,
                   all_scopes: Iterable[str] = (),
                   claims: Mapping[str, Any] | None = None) -> None:
        """:meth:`run` with an ``async`` call (httpx.AsyncClient on an ASGI app)."""
        rows = self.cases(op, all_scopes=all_scopes, claims=claims)
        self._verdict(op, rows, [await call(dict(row.headers)) for row in rows])

    def valid_headers(self, op: Operation, sub: str = "user-1", **claims: Any) -> Headers:
        """``Authorization`` with a valid token holding exactly ``op``'s scopes."""
        return bearer(self.tokens.token(sub=sub, scope=" ".join(sorted(op.scopes)), **claims))


def _refused(name: str, headers: Headers, reason: str) -> MatrixCase:
    """A 401 row: exactly ``token_problem(reason)``."""
    return MatrixCase(name, headers, token_problem(reason), reason)


def _json(response: Any) -> Any:
    try:
        return response.json()
    except ValueError:
        return getattr(response, "text", None)
