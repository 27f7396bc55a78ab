"""The revocation feed: ``GET /oauth/revocations?after=<cursor>``.

Every process that verifies access tokens locally (the gateway, every service, every
worker) polls this feed about once a second into its deny-set
(:mod:`charter.security.revocation`). The feed is read from the store's revocation log
(``auth.store.Revocation``), which every revocation path writes through the store's
``revoke_*`` functions::

    {"cursor": "1764480000123",
     "entries": [{"kind": "jti" | "grant" | "subject", "value": "…",
                  "until": <epoch s>, "revoked_at": <epoch s>}]}

The cursor is auth's clock in milliseconds when the answer was read. The next poll gets
every row recorded after ``cursor - OVERLAP_MS``: a revocation whose transaction committed
after a concurrent read (or recorded by another auth replica with a slightly different
clock) is still delivered; entries are idempotent, so the overlap costs only bytes.
Without ``after`` the whole live log is returned. Rows leave the feed once ``until``
(plus leeway) has passed. No authentication: see docs/security.md, "Revocation".
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, request

from auth.store import now, now_ms, revocations_since
from auth.web import ctx, problem

OVERLAP_MS = 10_000

bp = Blueprint("revocations", __name__)


def feed(after: int | None) -> dict[str, Any]:
    """The feed document for ``after`` (a cursor from an earlier answer, or ``None``)."""
    context = ctx()
    cursor = now_ms()
    since = -1 if after is None else after - OVERLAP_MS
    with context.db.session() as session:
        rows = revocations_since(session, since, now() - context.settings.leeway)
        entries = [
            {"kind": r.kind, "value": r.value, "until": r.until, "revoked_at": r.revoked_at}
            for r in rows
        ]
    return {"cursor": str(cursor), "entries": entries}


@bp.get("/oauth/revocations")
def revocations() -> Any:
    raw = request.args.get("after")
    after: int | None = None
    if raw is not None:
        if not raw.isdigit() or len(raw) > 16:
            return problem(400, "Bad Request", "'after' must be a cursor from this feed.")
        after = int(raw)
    response = jsonify(feed(after))
    response.headers["Cache-Control"] = "no-store"
    return response
