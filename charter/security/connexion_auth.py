"""The bridge between Connexion's ``oauth2`` security scheme and :class:`TokenVerifier`.

Specs point ``x-tokenInfoFunc`` at :func:`token_info`. Connexion runs it on the event
loop, so it is ``async`` and hands verification (which may fetch the JWKS over the
network on an unknown ``kid``) to a thread only when the token is not already cached.
Connexion then checks the operation's scopes against the ``scope`` we return.
"""

from __future__ import annotations

import asyncio
from typing import Any

from charter.security.tokens import InvalidToken, TokenVerifier, scopes_of

_verifier: TokenVerifier | None = None


def install(verifier: TokenVerifier) -> None:
    """Make ``verifier`` the one every spec's ``x-tokenInfoFunc`` uses in this process."""
    global _verifier
    _verifier = verifier


def current_verifier() -> TokenVerifier:
    """The installed verifier (raises if the app factory did not install one)."""
    if _verifier is None:
        raise RuntimeError("no token verifier installed")
    return _verifier


async def token_info(token: str) -> dict[str, Any] | None:
    """Connexion token-info function: claims plus ``scope`` as a list, or ``None`` (401)."""
    verifier = current_verifier()
    claims = verifier._cached(token)
    if claims is None:
        try:
            claims = await asyncio.to_thread(verifier.verify, token)
        except InvalidToken:
            return None
    info = dict(claims)
    info["scope"] = sorted(scopes_of(claims))
    return info
