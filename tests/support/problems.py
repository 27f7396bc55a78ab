"""Assertions on RFC 9457 problem+json answers, shared by every service's tests."""

from __future__ import annotations

from typing import Any

PROBLEM = "application/problem+json"


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    """Assert ``response`` is a problem+json document with ``status``; return its body.

    Works with every test client the suite uses (Starlette/httpx and Flask responses):
    the status line and the body's ``status`` must agree, ``title`` must be present, and
    a 5xx body must not carry a traceback or an exception class name.
    """
    code = getattr(response, "status_code", None)
    assert code == status, f"{code} {getattr(response, 'text', '')}"
    content_type = response.headers.get("content-type", "")
    assert content_type.startswith(PROBLEM), response.headers
    # httpx/Starlette: ``json()`` is a method; Flask/Werkzeug: ``json`` is a property
    body: dict[str, Any] = response.json() if callable(response.json) else response.json
    assert body["status"] == status and body.get("title"), body
    if status >= 500:
        text = " ".join(str(v) for v in body.values())
        assert "Traceback" not in text and "Error:" not in text, body
    return body
