"""Token verification: JWKS cache behaviour and the validated-token cache."""

from __future__ import annotations

import time

import pytest

from charter.config import AuthSettings
from charter.problems import type_uri
from charter.security.tokens import (
    InvalidToken,
    JWKSCache,
    TokenVerifier,
    scopes_of,
    token_problem,
)
from charter.testing import TokenFactory


def test_valid_token_returns_claims() -> None:
    f = TokenFactory()
    claims = f.verifier().verify(f.token(sub="bob", scope="a b"))
    assert claims["sub"] == "bob"
    assert scopes_of(claims) == {"a", "b"}


@pytest.mark.parametrize("kind", sorted(TokenFactory().bad_tokens("x")))
def test_each_bad_token_is_refused(kind: str) -> None:
    f = TokenFactory()
    with pytest.raises(InvalidToken):
        f.verifier().verify(f.bad_tokens("x")[kind])


def test_algorithm_none_is_refused() -> None:
    import jwt

    f = TokenFactory()
    unsigned = jwt.encode({"sub": "x"}, None, algorithm="none", headers={"kid": f.kid,
                                                                      "typ": "at+jwt"})
    with pytest.raises(InvalidToken, match="algorithm"):
        f.verifier().verify(unsigned)


def test_unknown_kid_triggers_one_refresh() -> None:
    old, new = TokenFactory(kid="k1"), TokenFactory(kid="k2")
    served = {"keys": old.jwks()["keys"]}
    calls = []

    def fetch() -> dict:  # type: ignore[type-arg]
        calls.append(1)
        return served

    cache = JWKSCache(fetch, min_refresh_interval=0)
    verifier = TokenVerifier(AuthSettings(old.issuer, old.audience, ""), cache)
    verifier.verify(old.token())
    assert len(calls) == 1
    served = {"keys": old.jwks()["keys"] + new.jwks()["keys"]}  # rotation published
    assert verifier.verify(new.token(sub="n"))["sub"] == "n"
    assert len(calls) == 2
    assert set(cache.kids) == {"k1", "k2"}


def test_refresh_is_rate_limited_and_survives_fetch_errors() -> None:
    f = TokenFactory()
    calls = []

    def failing() -> dict:  # type: ignore[type-arg]
        calls.append(1)
        raise ConnectionError("auth down")

    cache = JWKSCache(failing, min_refresh_interval=60)
    verifier = TokenVerifier(AuthSettings(f.issuer, f.audience, ""), cache)
    for _ in range(5):
        with pytest.raises(InvalidToken, match="unknown signing key"):
            verifier.verify(f.token())
    assert len(calls) == 1


def test_validated_tokens_are_cached_until_expiry() -> None:
    f = TokenFactory()
    now = [time.time()]
    verifier = TokenVerifier(AuthSettings(f.issuer, f.audience, "", leeway=0),
                             f.verifier().jwks, clock=lambda: now[0])
    token = f.token(expires_in=60)
    verifier.verify(token)
    assert verifier.verify_cached(token) is not None
    now[0] += 61
    assert verifier.verify_cached(token) is None
    assert verifier.cache_size == 0


def test_expired_token_is_refused_as_expired() -> None:
    f = TokenFactory()
    verifier = TokenVerifier(AuthSettings(f.issuer, f.audience, "", leeway=0),
                             f.verifier().jwks)
    with pytest.raises(InvalidToken) as refused:
        verifier.verify(f.token(expires_in=-5))
    assert refused.value.reason == "expired"


def test_cache_is_bounded() -> None:
    f = TokenFactory()
    verifier = TokenVerifier(AuthSettings(f.issuer, f.audience, ""), f.verifier().jwks,
                             cache_size=3)
    tokens = [f.token(sub=str(i)) for i in range(5)]
    for t in tokens:
        verifier.verify(t)
    assert verifier.cache_size == 3
    assert verifier.verify_cached(tokens[0]) is None
    assert verifier.verify_cached(tokens[4]) is not None


@pytest.mark.parametrize(
    ("kind", "reason"),
    [("expired", "expired"), ("wrong_audience", "invalid"), ("bad_signature", "invalid")],
)
def test_failure_reasons_are_classified(kind: str, reason: str) -> None:
    f = TokenFactory()
    with pytest.raises(InvalidToken) as refused:
        f.verifier().verify(f.bad_tokens("x")[kind])
    assert refused.value.reason == reason


def test_problem_never_echoes_the_library_reason() -> None:
    for reason in ("invalid", "InvalidAudienceError", "whatever"):
        problem = token_problem(reason)
        assert problem.body() == {"type": type_uri("unauthorized"), "title": "Unauthorized",
                                  "status": 401, "detail": "The access token is invalid."}
        assert 'error="invalid_token"' in problem.headers["WWW-Authenticate"]
    assert token_problem("revoked").detail == "The access token has been revoked."
    assert token_problem("missing").headers["WWW-Authenticate"] == 'Bearer realm="charter"'
