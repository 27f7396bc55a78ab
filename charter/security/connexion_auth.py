"""The bridge between Connexion's ``oauth2`` security scheme and an app's :class:`TokenVerifier`.

Specs point ``x-tokenInfoFunc`` at :func:`token_info`. The verifier is not a process-wide
global: each app owns one, and :class:`VerifierMiddleware` (added by the app factory just
before Connexion's security middleware) puts it in the ASGI scope, where
:func:`token_info` finds it through the ``request`` Connexion passes.

Connexion runs the function on the event loop, so it is ``async`` and hands verification
(which may fetch the JWKS over the network on an unknown ``kid``) to a thread only when
the token is not already cached. A refused token raises :class:`TokenRejected`, whose
body is :func:`charter.security.tokens.token_problem` — the same the gateway answers.
Connexion then checks the operation's scopes against the ``scope`` we return; the app
factory answers its refusal with :class:`InsufficientScope`
(:func:`charter.security.tokens.scope_problem`, again the gateway's 403).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from charter.problems import Problem
from charter.security.tokens import (
    InvalidToken,
    TokenProblem,
    TokenVerifier,
    scope_problem,
    scopes_of,
    token_problem,
)

log = logging.getLogger(__name__)

SCOPE_KEY = "charter.token_verifier"


class TokenRejected(Problem):
    """401 for a missing or refused token, with the shared body and challenge."""

    def __init__(self, reason: str) -> None:
        p = token_problem(reason)
        super().__init__(p.detail, kind=p.kind, headers=p.headers)
        self.reason = reason


class InsufficientScope(Problem):
    """403 for a valid token lacking the operation's scope, with the shared body and
    ``insufficient_scope`` challenge (:func:`scope_problem`)."""

    def __init__(self, required: Iterable[str]) -> None:
        p: TokenProblem = scope_problem(required)
        super().__init__(p.detail, kind=p.kind, headers=p.headers)


class VerifierMiddleware:
    """ASGI middleware that hands the app's verifier to :func:`token_info`."""

    def __init__(self, app: ASGIApp, verifier: TokenVerifier) -> None:
        self.app = app
        self.verifier = verifier

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope[SCOPE_KEY] = self.verifier
        await self.app(scope, receive, send)


def verifier_of(scope: Scope) -> TokenVerifier:
    """The verifier of the app serving this request (raises if none was installed)."""
    verifier = scope.get(SCOPE_KEY)
    if not isinstance(verifier, TokenVerifier):
        raise RuntimeError("no token verifier in the request scope (VerifierMiddleware)")
    return verifier


async def verify(verifier: TokenVerifier, token: str) -> dict[str, Any]:
    """Claims of ``token`` (cache first, else verified in a thread) or :class:`InvalidToken`."""
    claims = verifier.verify_cached(token)
    if claims is None:
        claims = await asyncio.to_thread(verifier.verify, token)
    return claims


async def token_info(token: str, request: Any) -> dict[str, Any]:
    """Connexion token-info function: claims plus ``scope`` as a list.

    Raises :class:`TokenRejected` (401, shared problem) when the token is refused.
    """
    verifier = verifier_of(request.scope)
    try:
        claims = await verify(verifier, token)
    except InvalidToken as exc:
        log.info("access token refused: %s", exc)
        raise TokenRejected(exc.reason) from exc
    info = dict(claims)
    info["scope"] = sorted(scopes_of(claims))
    return info
