"""``Prefer: wait`` parsing (RFC 7240): honoured values, caps, and what is ignored."""

from __future__ import annotations

import pytest

from charter import prefer


@pytest.mark.parametrize(("header", "seconds"), [
    ("wait=3", 3.0),
    ("WAIT = 4", 4.0),
    ('wait="2"', 2.0),
    ("respond-async, wait=1", 1.0),
    ("return=minimal; x=y, wait=2;foo", 2.0),
    ("wait=600", 5.0),          # capped
    ("wait=0", 0.0),
])
def test_wait_is_read_and_capped(header: str, seconds: float) -> None:
    assert prefer.wait_seconds(header, limit=5.0) == seconds


@pytest.mark.parametrize("header", [None, "", "respond-async", "wait", "wait=-1",
                                    "wait=1.5", "wait=soon", "waiting=3", "wait=1234567"])
def test_what_is_not_a_wait_is_ignored(header: str | None) -> None:
    assert prefer.wait_seconds(header, limit=5.0) == 0.0


def test_applied_names_whole_seconds() -> None:
    assert prefer.applied(5.0) == "wait=5"
