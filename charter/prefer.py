"""The ``Prefer`` request header (RFC 7240), as far as Charter honours it: ``wait=N``.

A client that would rather wait a little than poll sends ``Prefer: wait=5``; an operation
that can finish its work in that time answers with the outcome and
``Preference-Applied: wait=5``. Without the header, or with a preference the operation
does not honour, the answer is what it always was (RFC 7240 §2: a server ignores what it
does not support). Parsing is written here because it is a dozen lines and no kept
library parses this header.
"""

from __future__ import annotations

import re

_WAIT = re.compile(r"^\s*wait\s*=\s*\"?(\d{1,6})\"?\s*$", re.IGNORECASE)


def wait_seconds(header: str | None, *, limit: float) -> float:
    """Seconds the client prefers to wait (``Prefer: wait=N``), capped at ``limit``;
    0 when the header is absent, names no ``wait`` or is malformed (then it is ignored,
    as RFC 7240 asks, rather than refused)."""
    if not header:
        return 0.0
    for preference in header.split(","):
        token = preference.split(";", 1)[0]  # parameters of a preference: none used here
        found = _WAIT.match(token)
        if found:
            return min(float(found.group(1)), limit)
    return 0.0


def applied(seconds: float) -> str:
    """The ``Preference-Applied`` value for an honoured wait."""
    return f"wait={int(seconds)}"
