"""charter.deprecation: the typed model of governance/deprecation.yaml and the headers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from charter import deprecation

ENTRY: dict[str, Any] = {
    "api": "orders", "version": "v1",
    "deprecated_at": "2026-11-30T00:00:00Z", "sunset_at": "2027-06-01T00:00:00Z",
    "successor": {"api": "orders", "version": "v2"},
}


def doc(**changes: Any) -> dict[str, Any]:
    return {"minimum_notice_days": 180, "policy_path": "/policies/deprecation",
            "versions": [{**ENTRY, **changes}]}


def test_the_committed_file_lists_orders_v1_with_v2_as_successor() -> None:
    entry = deprecation.load().find("orders", "v1")
    assert entry is not None
    assert (entry.successor.api, entry.successor.version) == ("orders", "v2")
    assert deprecation.load().find("orders", "v2") is None


@pytest.mark.parametrize(("changes", "error"), [
    ({"sunset_at": "2027-01-01T00:00:00Z"}, "at least 180 days"),
    ({"successor": {"api": "orders", "version": "v1"}}, "cannot succeed itself"),
    ({"deprecated_at": "2026-11-30T00:00:00"}, "timezone"),
    ({"version": "1"}, "pattern"),
    ({"sunsets": "soon"}, "Extra inputs"),
])
def test_bad_entries_are_refused(changes: dict[str, Any], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        deprecation.parse(doc(**changes))


def test_an_entry_listed_twice_is_refused() -> None:
    data = doc()
    data["versions"] *= 2
    with pytest.raises(ValidationError, match="listed twice"):
        deprecation.parse(data)


def test_headers_follow_rfc_9745_and_8594() -> None:
    policy = deprecation.parse(doc())
    entry = policy.find("orders", "v1")
    assert entry is not None
    headers = dict(deprecation.headers(entry, policy.policy_path, "https://api.example"))
    assert headers[b"deprecation"] == b"@1795996800"  # 2026-11-30T00:00:00Z
    assert headers[b"sunset"] == b"Tue, 01 Jun 2027 00:00:00 GMT"
    assert headers[b"link"] == (
        b'<https://api.example/orders/v2/ui/>; rel="successor-version", '
        b'<https://api.example/policies/deprecation>; rel="deprecation"')
    assert not entry.is_sunset(datetime(2027, 5, 31, 23, 59, 59, tzinfo=UTC))
    assert entry.is_sunset(datetime(2027, 6, 1, tzinfo=UTC))


def test_the_gone_problem_uses_the_registered_type() -> None:
    entry = deprecation.parse(doc()).find("orders", "v1")
    assert entry is not None
    body = deprecation.gone_body(entry, "https://api.example")
    assert body["type"] == "https://api.example/problems/api-version-sunset"
    assert (body["status"], body["title"]) == (410, "API version sunset")


def test_no_file_means_nothing_is_deprecated(tmp_path: Any) -> None:
    assert deprecation.load(tmp_path / "missing.yaml").versions == ()


def test_specs_agree_with_the_file() -> None:
    """Each listed version: every operation ``deprecated: true`` with ``x-sunset`` equal to
    the file's date, ``x-lifecycle: deprecated``; the successor's spec exists."""
    from charter import specs

    for entry in deprecation.load().versions:
        doc = specs.load(entry.api, entry.version)
        assert doc["info"]["x-lifecycle"] == "deprecated"
        ops = [op for item in doc["paths"].values() for op in item.values()
               if isinstance(op, dict) and "operationId" in op]
        assert ops
        for op in ops:
            assert op.get("deprecated") is True, op["operationId"]
            assert op.get("x-sunset") == entry.sunset_at.date().isoformat(), op["operationId"]
        successor = specs.load(entry.successor.api, entry.successor.version)
        assert successor["info"]["x-lifecycle"] != "deprecated"
