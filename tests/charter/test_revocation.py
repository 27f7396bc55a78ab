"""Deny-set, feed poller and the verifier's revocation check (injected clocks, no sleeps)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from charter.config import AuthSettings
from charter.security.revocation import DenySet, Entry, RevocationPoller
from charter.security.tokens import InvalidToken, TokenVerifier
from charter.testing import TokenFactory

NOW = 1_800_000_000


class Clock:
    def __init__(self, t: float = NOW) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class FakeFeed:
    """Serves entries with a cursor like auth's feed; can be made to fail."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []
        self.fail = False
        self.cursors: list[str | None] = []

    def revoke(self, kind: str, value: str, until: int = NOW + 900,
               revoked_at: int = NOW) -> None:
        self.entries.append({"kind": kind, "value": value, "until": until,
                             "revoked_at": revoked_at})

    def __call__(self, cursor: str | None) -> Mapping[str, Any]:
        self.cursors.append(cursor)
        if self.fail:
            raise ConnectionError("auth down")
        start = int(cursor) if cursor else 0
        return {"cursor": str(len(self.entries)), "entries": self.entries[start:]}


def claims(**extra: Any) -> dict[str, Any]:
    base = {"jti": "j1", "sub": "u1", "sid": "g1", "iat": NOW - 10, "exp": NOW + 890}
    base.update(extra)
    return base


def test_each_kind_of_entry_matches_its_tokens() -> None:
    deny = DenySet(clock=Clock())
    assert deny.revoked(claims()) is None
    deny.add([Entry("jti", "j1", NOW + 900, NOW)])
    assert deny.revoked(claims()) == "jti"
    assert deny.revoked(claims(jti="j2")) is None
    deny.add([Entry("grant", "g1", NOW + 900, NOW)])
    assert deny.revoked(claims(jti="j2")) == "grant"
    assert deny.revoked(claims(jti="j2", sid="g2")) is None
    assert deny.revoked(claims(jti="j2", sid=None)) is None  # client-credentials token


def test_subject_entry_refuses_only_tokens_issued_before_it() -> None:
    deny = DenySet(clock=Clock())
    deny.add([Entry("subject", "u1", NOW + 900, NOW)])
    assert deny.revoked(claims(jti="x", sid="y", iat=NOW - 1)) == "subject"
    assert deny.revoked(claims(jti="x", sid="y", iat=NOW)) == "subject"
    assert deny.revoked(claims(jti="x", sid="y", iat=NOW + 1)) is None  # re-enabled later
    assert deny.revoked(claims(jti="x", sid="y", sub="u2")) is None


def test_entries_are_dropped_once_no_token_can_match() -> None:
    clock = Clock()
    deny = DenySet(leeway=30, clock=clock)
    deny.add([Entry("jti", "a", NOW + 60, NOW), Entry("jti", "b", NOW + 600, NOW)])
    assert len(deny) == 2
    clock.t = NOW + 60 + 30
    assert deny.prune() == 0  # within leeway still
    clock.t = NOW + 60 + 31
    assert deny.prune() == 1
    assert deny.revoked(claims(jti="a")) is None
    assert deny.revoked(claims(jti="b")) == "jti"
    assert deny.add([Entry("jti", "old", NOW - 1000, NOW - 2000)]) == 0  # already dead


def test_adding_is_idempotent_and_widens() -> None:
    deny = DenySet(clock=Clock())
    entry = Entry("subject", "u1", NOW + 100, NOW - 50)
    assert deny.add([entry, entry]) == 1
    assert deny.add([entry]) == 0
    assert deny.add([Entry("subject", "u1", NOW + 900, NOW)]) == 1
    assert deny.revoked(claims(jti="x", sid="y", iat=NOW - 1)) == "subject"


def test_poller_follows_the_cursor_and_keeps_state_on_errors() -> None:
    feed, mono = FakeFeed(), Clock(0)
    deny = DenySet(clock=Clock())
    poller = RevocationPoller(feed, deny, interval=1, max_staleness=30, clock=mono)
    feed.revoke("jti", "j1")
    assert poller.poll_once()
    assert feed.cursors == [None]
    assert deny.revoked(claims()) == "jti"
    feed.revoke("grant", "g9")
    mono.t = 1
    assert poller.poll_once()
    assert feed.cursors[-1] == "1"
    assert deny.revoked(claims(jti="x", sid="g9")) == "grant"

    feed.fail = True
    mono.t = 2
    assert not poller.poll_once()
    assert deny.revoked(claims()) == "jti"  # last good state kept
    assert poller.cursor == "2"
    poller.check()  # recent success: ready
    mono.t = 1 + 31
    with pytest.raises(RuntimeError, match="unreachable"):
        poller.check()
    feed.fail = False
    assert poller.poll_once()
    poller.check()


def test_poller_refuses_malformed_documents_without_losing_state() -> None:
    deny = DenySet(clock=Clock())
    deny.add([Entry("jti", "j1", NOW + 900, NOW)])
    docs: list[Mapping[str, Any]] = [
        {"entries": []},  # no cursor
        {"cursor": "1", "entries": [{"kind": "everything", "value": "*", "until": 1,
                                     "revoked_at": 1}]},
    ]
    poller = RevocationPoller(lambda _c: docs.pop(0), deny, clock=Clock(0))
    assert not poller.poll_once()
    assert not poller.poll_once()
    assert poller.cursor is None
    assert deny.revoked(claims()) == "jti"


def test_not_ready_when_the_first_poll_never_succeeds() -> None:
    feed, mono = FakeFeed(), Clock(100)
    feed.fail = True
    poller = RevocationPoller(feed, DenySet(), max_staleness=30, clock=mono)
    assert not poller.poll_once()
    poller.check()  # starting up
    mono.t = 131
    with pytest.raises(RuntimeError):
        poller.check()


def test_delay_is_jittered_within_bounds() -> None:
    poller = RevocationPoller(FakeFeed(), DenySet(), interval=1.0, jitter=0.2,
                              rng=iter([0.0, 0.5, 1.0]).__next__)
    assert [round(poller.next_delay(), 3) for _ in range(3)] == [0.8, 1.0, 1.2]


def test_verifier_refuses_revoked_tokens_even_when_cached() -> None:
    f = TokenFactory()
    deny = DenySet()
    verifier = TokenVerifier(AuthSettings(f.issuer, f.audience, ""), f.verifier().jwks,
                             revocations=deny)
    token = f.token(sub="alice", sid="grant-7")
    claims_ = verifier.verify(token)
    assert verifier.verify_cached(token) == claims_
    deny.add([Entry("grant", "grant-7", claims_["exp"], claims_["iat"])])
    with pytest.raises(InvalidToken) as refused:
        verifier.verify_cached(token)
    assert refused.value.reason == "revoked"
    with pytest.raises(InvalidToken):
        verifier.verify(token)
    other = f.token(sub="alice", sid="grant-8")
    assert verifier.verify(other)["sid"] == "grant-8"


def test_verifier_checks_revocation_on_first_sight_too() -> None:
    f = TokenFactory()
    deny = DenySet()
    verifier = TokenVerifier(AuthSettings(f.issuer, f.audience, ""), f.verifier().jwks,
                             revocations=deny)
    token = f.token(sub="bob")
    import jwt

    jti = jwt.decode(token, options={"verify_signature": False})["jti"]
    deny.add([Entry("jti", jti, NOW * 2, NOW)])
    with pytest.raises(InvalidToken) as refused:
        verifier.verify(token)
    assert refused.value.reason == "revoked"
