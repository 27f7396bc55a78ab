"""Bad input is answered 400 problem+json, never 500, and nothing is sent."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from notifications_support import EMAIL, SMS, InMemoryProvider

from tests.support.plugin import PROBLEM, assert_problem

Auth = Callable[..., dict[str, str]]

BAD_BODIES: dict[str, Any] = {
    "invalid_email": {**EMAIL, "recipient": "alice-at-example.com"},
    "email_without_domain_dot": {**EMAIL, "recipient": "alice@localhost"},
    "email_with_header_injection": {**EMAIL, "recipient": "a@example.com\r\nBcc: b@example.com"},
    "two_recipients": {**EMAIL, "recipient": "a@example.com, b@example.com"},
    "phone_for_email": {**EMAIL, "recipient": "+491701234567"},
    "email_for_sms": {**SMS, "recipient": "alice@example.com"},
    "phone_not_e164": {**SMS, "recipient": "0170 1234567"},
    "unknown_channel": {**EMAIL, "channel": "fax"},
    "channel_upper": {**EMAIL, "channel": "EMAIL"},
    "channel_missing": {k: v for k, v in EMAIL.items() if k != "channel"},
    "recipient_missing": {k: v for k, v in EMAIL.items() if k != "recipient"},
    "body_missing": {k: v for k, v in EMAIL.items() if k != "body"},
    "email_subject_missing": {k: v for k, v in EMAIL.items() if k != "subject"},
    "subject_blank": {**EMAIL, "subject": "   "},
    "subject_newline": {**EMAIL, "subject": "Hi\r\nBcc: evil@example.com"},
    "subject_too_long": {**EMAIL, "subject": "s" * 201},
    "body_empty": {**EMAIL, "body": ""},
    "body_blank": {**EMAIL, "body": "  \n "},
    "body_oversized": {**EMAIL, "body": "x" * 10_001},
    "body_huge": {**EMAIL, "body": "x" * 2_000_000},
    "sms_too_long": {**SMS, "body": "x" * 1601},
    "body_not_string": {**EMAIL, "body": 42},
    "order_id_bad": {**EMAIL, "order_id": "ord/1"},
    "template_bad": {**EMAIL, "template": "Order Confirmed!"},
    "unknown_field": {**EMAIL, "bcc": "boss@example.com"},
    "array": [EMAIL],
    "string": "hello",
    "null": None,
    "empty": {},
}


@pytest.mark.parametrize("body", list(BAD_BODIES.values()), ids=list(BAD_BODIES))
def test_bad_notification_is_400(client: Any, auth: Auth, provider: InMemoryProvider,
                                 body: Any) -> None:
    r = client.post("/v1/notifications", content=json.dumps(body), headers={
        **auth(), "Content-Type": "application/json", "Idempotency-Key": "bad-input-key-01"})
    assert_problem(r, 400)
    assert provider.sent == []
    # the key was not consumed: a valid request with it goes through
    ok = client.post("/v1/notifications", json=EMAIL,
                     headers={**auth(), "Idempotency-Key": "bad-input-key-01"})
    assert ok.status_code == 201, ok.text


@pytest.mark.parametrize("query", [
    "page=0", "page_size=101", "page=abc", "status=lost", "channel=fax",
    "order_id=a%20b", "recipient=", "recipient=" + "x" * 255, "unknown=1",
])
def test_bad_list_query_is_400(client: Any, auth: Auth, query: str) -> None:
    assert_problem(client.get(f"/v1/notifications?{query}", headers=auth()), 400)


@pytest.mark.parametrize("notification_id", ["123", "not-a-uuid",
                                             "00000000-0000-4000-8000-00000000000Z"])
def test_bad_notification_id_is_400_or_404(client: Any, auth: Auth,
                                           notification_id: str) -> None:
    r = client.get(f"/v1/notifications/{notification_id}", headers=auth())
    assert r.status_code in (400, 404), r.text
    assert r.headers["content-type"].startswith(PROBLEM)


def test_malformed_json_and_wrong_content_type(client: Any, auth: Auth) -> None:
    headers = {**auth(), "Idempotency-Key": "bad-json-key-01"}
    r = client.post("/v1/notifications", content=b'{"channel": ',
                    headers={**headers, "Content-Type": "application/json"})
    assert_problem(r, 400)
    r = client.post("/v1/notifications", content=b"channel=email",
                    headers={**headers, "Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code in (400, 415) and r.headers["content-type"].startswith(PROBLEM)


def test_unknown_path_and_method_are_problems(client: Any, auth: Auth) -> None:
    r = client.get("/v1/messages", headers=auth())
    assert r.status_code == 404 and r.headers["content-type"].startswith(PROBLEM)
    r = client.delete("/v1/notifications", headers=auth())
    assert r.status_code == 405 and r.headers["content-type"].startswith(PROBLEM)
