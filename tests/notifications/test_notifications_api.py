"""Every notifications operation over HTTP, with the in-memory provider."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from notifications_support import EMAIL, SMS, InMemoryProvider

from services.notifications.ports import ProviderError
from tests.support.plugin import assert_problem

Auth = Callable[..., dict[str, str]]
Send = Callable[..., Any]


def test_send_email(send: Send, provider: InMemoryProvider, client: Any, auth: Auth) -> None:
    r = send(EMAIL, key="order-ord-1-confirmed")
    assert r.status_code == 201, r.text
    body = r.json()
    assert body == {
        "id": body["id"], "channel": "email", "recipient": "alice@example.com",
        "subject": EMAIL["subject"], "body": EMAIL["body"], "order_id": "ord-1",
        "template": "order-confirmed", "status": "sent", "provider": "memory",
        "provider_reference": "mem-1", "failure_reason": None,
        "created_at": body["created_at"], "sent_at": body["sent_at"],
    }
    assert r.headers["location"] == f"/v1/notifications/{body['id']}"
    assert "idempotent-replayed" not in r.headers
    assert body["sent_at"].endswith("Z") and body["created_at"] <= body["sent_at"]
    [message] = provider.sent
    assert (message.id, message.recipient, message.subject, message.body) == (
        body["id"], "alice@example.com", EMAIL["subject"], EMAIL["body"])
    assert client.get(f"/v1/notifications/{body['id']}", headers=auth()).json() == body


def test_send_sms_without_subject(send: Send, provider: InMemoryProvider) -> None:
    r = send(SMS)
    assert r.status_code == 201, r.text
    assert (r.json()["channel"], r.json()["subject"], r.json()["template"]) == ("sms", None, None)
    assert provider.sent[0].recipient == "+491701234567"


def test_minimal_email(send: Send) -> None:
    r = send({"channel": "email", "recipient": "Bob@Example.ORG", "subject": "Hi",
              "body": "Hello"})
    assert r.status_code == 201, r.text
    assert r.json()["recipient"] == "Bob@example.org"
    assert (r.json()["order_id"], r.json()["template"]) == (None, None)


# idempotency ------------------------------------------------------------------------------
def test_same_key_never_sends_twice(send: Send, provider: InMemoryProvider) -> None:
    first = send(EMAIL, key="key-confirm-ord-1")
    for _ in range(3):
        again = send(EMAIL, key="key-confirm-ord-1")
        assert again.status_code == 201
        assert again.headers["idempotent-replayed"] == "true"
        assert again.json() == first.json()
    assert len(provider.sent) == 1


def test_same_key_different_body_is_422(send: Send, provider: InMemoryProvider) -> None:
    assert send(EMAIL, key="key-confirm-ord-1").status_code == 201
    problem = assert_problem(send({**EMAIL, "body": "something else"}, key="key-confirm-ord-1"),
                             422)
    assert "key-confirm-ord-1" in problem["detail"]
    assert len(provider.sent) == 1


def test_different_keys_send_again(send: Send, provider: InMemoryProvider) -> None:
    assert send(EMAIL, key="key-a-000001").status_code == 201
    assert send(EMAIL, key="key-b-000001").status_code == 201
    assert len(provider.sent) == 2


def test_missing_or_bad_idempotency_key_is_400(client: Any, auth: Auth,
                                               provider: InMemoryProvider) -> None:
    assert_problem(client.post("/v1/notifications", json=EMAIL, headers=auth()), 400)
    for key in ("short", "has space in it", "x" * 129, "semi;colon;key"):
        r = client.post("/v1/notifications", json=EMAIL,
                        headers={**auth(), "Idempotency-Key": key})
        assert_problem(r, 400)
    assert provider.sent == []


# provider failures ---------------------------------------------------------------------------
def test_refused_message_is_recorded_failed_and_502(
    send: Send, provider: InMemoryProvider, client: Any, auth: Auth
) -> None:
    provider.fail = ProviderError("memory", "recipient refused: 550 no such user",
                                  permanent=True)
    response = send(EMAIL, key="key-fail-000001")
    problem = assert_problem(response, 502)
    # the provider's answer is for staff (the record) and the log, never the 5xx body
    assert "550" not in response.text and "no such user" not in response.text
    assert problem["correlation_id"] == response.headers["x-correlation-id"]
    record = client.get(f"/v1/notifications/{problem['notification_id']}", headers=auth()).json()
    assert record["status"] == "failed"
    assert record["failure_reason"] == "recipient refused: 550 no such user"
    assert (record["provider"], record["sent_at"]) == ("memory", None)
    # the key was released: the same request is tried again (a new record) and now works
    provider.fail = None
    retry = send(EMAIL, key="key-fail-000001")
    assert retry.status_code == 201 and retry.json()["id"] != problem["notification_id"]
    assert send(EMAIL, key="key-fail-000001").headers["idempotent-replayed"] == "true"
    assert len(provider.sent) == 1
    listing = client.get("/v1/notifications?order_id=ord-1", headers=auth()).json()
    assert [n["status"] for n in listing["items"]] == ["sent", "failed"]


def test_unreachable_provider_is_503_with_retry_after(
    send: Send, provider: InMemoryProvider, client: Any, auth: Auth
) -> None:
    provider.fail = ProviderError("memory", "server unreachable: timed out", permanent=False)
    r = send(EMAIL, key="key-down-000001")
    problem = assert_problem(r, 503)
    assert "unreachable" not in r.text and "timed out" not in r.text
    assert problem["correlation_id"] == r.headers["x-correlation-id"]
    assert r.headers["retry-after"] == "30"
    record = client.get(f"/v1/notifications/{problem['notification_id']}", headers=auth()).json()
    assert record["status"] == "failed" and "timed out" in record["failure_reason"]


def test_a_crashing_provider_is_502_and_releases_the_key(
    send: Send, provider: InMemoryProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(_message: Any) -> Any:
        raise RuntimeError("adapter bug with secret detail")

    monkeypatch.setattr(provider, "send", boom)
    response = send(EMAIL, key="key-bug-000001")
    problem = assert_problem(response, 502)
    assert "secret detail" not in response.text and "RuntimeError" not in response.text
    assert problem["correlation_id"] == response.headers["x-correlation-id"]
    monkeypatch.undo()
    monkeypatch.setenv("CHARTER_VALIDATE_RESPONSES", "1")
    assert send(EMAIL, key="key-bug-000001").status_code == 201


# staff reads -----------------------------------------------------------------------------
def test_listing_filters_and_pagination(send: Send, client: Any, auth: Auth) -> None:
    send({**EMAIL, "order_id": "ord-1"})
    send({**EMAIL, "order_id": "ord-2", "recipient": "Alice@EXAMPLE.com"})
    send({**SMS, "order_id": "ord-2"})
    send({**EMAIL, "recipient": "bob@example.com", "order_id": "ord-3"})
    staff = auth("carol", role="staff")
    everything = client.get("/v1/notifications", headers=staff).json()
    assert everything["total"] == 4 and everything["page_size"] == 20
    assert [n["order_id"] for n in everything["items"]] == ["ord-3", "ord-2", "ord-2", "ord-1"]

    def total(query: str) -> int:
        r = client.get(f"/v1/notifications?{query}", headers=staff)
        assert r.status_code == 200, r.text
        return int(r.json()["total"])

    assert total("recipient=alice@example.com") == 2
    assert total("recipient=ALICE@example.COM") == 2
    assert total("recipient=%2B491701234567") == 1
    assert total("recipient=nobody@example.com") == 0
    assert total("order_id=ord-2") == 2
    assert total("order_id=ord-2&channel=email") == 1
    assert total("status=sent") == 4 and total("status=failed") == 0
    page = client.get("/v1/notifications?page=2&page_size=3", headers=staff).json()
    assert (page["page"], page["page_size"], page["total"], len(page["items"])) == (2, 3, 4, 1)


@pytest.mark.parametrize("role", ["staff", "admin", "service"])
def test_privileged_roles_read(send: Send, client: Any, auth: Auth, role: str) -> None:
    created = send().json()
    headers = auth("someone", role=role)
    assert client.get("/v1/notifications", headers=headers).json()["total"] == 1
    assert client.get(f"/v1/notifications/{created['id']}", headers=headers).json() == created


def test_customers_and_plain_clients_are_refused(
    send: Send, client: Any, auth: Auth, tokens: Any, provider: InMemoryProvider
) -> None:
    created = send().json()
    customer = auth("alice", role="customer")
    plain = {"Authorization": "Bearer " + tokens.token(sub="demo-cli", scope="notifications:read "
                                                        "notifications:write")}
    for headers in (customer, plain):
        assert_problem(client.get("/v1/notifications", headers=headers), 403)
        assert_problem(client.get(f"/v1/notifications/{created['id']}", headers=headers), 403)
        r = client.post("/v1/notifications", json=EMAIL,
                        headers={**headers, "Idempotency-Key": "key-customer-01"})
        assert_problem(r, 403)
    assert len(provider.sent) == 1


def test_unknown_notification_is_404(client: Any, auth: Auth) -> None:
    r = client.get("/v1/notifications/00000000-0000-4000-8000-000000000000", headers=auth())
    assert_problem(r, 404)
