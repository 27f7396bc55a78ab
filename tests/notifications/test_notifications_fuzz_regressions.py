"""Regressions of what Schemathesis found on notifications (tests/fuzz).

``/notifications`` has a public ``GET`` and an internal ``POST``. Called directly (as
the orders service does, over mTLS), a method the path does not have answered 405 with
``Allow: POST`` only: Starlette lists the methods of the first route matching the path,
and Connexion adds one route per operation. RFC 9110 §15.5.6: ``Allow`` lists every
method the resource supports (fixed for every service in ``charter/connexion_fixes.py``).
"""
# The spec half of this file is below the 405 test.

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from jsonschema import Draft4Validator

from charter import specs
from services.notifications.domain import InvalidNotification, NotificationRequest
from tests.fuzz.support import register_formats
from tests.support.plugin import assert_problem


@pytest.mark.parametrize("method", ["OPTIONS", "PUT", "DELETE", "PATCH"])
def test_405_allows_every_method_of_the_path(client: Any, method: str) -> None:
    response = client.request(method, "/v1/notifications")
    assert_problem(response, 405)
    allowed = {m.strip() for m in response.headers["allow"].split(",")}
    assert {"GET", "POST"} <= allowed, response.headers["allow"]


# The spec said any 3-254 character recipient for either channel, any subject and body:
# Schemathesis sent schema-valid messages that the service refused with 400 ("schema-valid
# request rejected"), e.g. an "email" to '-m¥8'. The spec now states the service's rules
# (oneOf email | sms); every body it allows must be one the domain accepts.

def _schema(name: str) -> dict[str, Any]:
    doc = specs.load("notifications")
    return {"$ref": f"#/components/schemas/{name}", "components": doc["components"]}


register_formats()


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(case=schemathesis.openapi.from_dict(specs.load("notifications"))
       ["/notifications"]["POST"].as_strategy())
def test_every_body_the_spec_allows_is_a_valid_notification(case: Any) -> None:
    NotificationRequest.create(**case.body)  # InvalidNotification when the two disagree


@pytest.mark.parametrize("body", [
    {"channel": "email", "recipient": "-m\u00a58", "subject": "Hi", "body": "text"},
    {"channel": "email", "recipient": "0" * 200, "subject": "Hi", "body": "text"},
    {"channel": "email", "recipient": "alice@example.com", "body": "no subject"},
    {"channel": "email", "recipient": "alice@example.com", "subject": "a\u0007b", "body": "x"},
    {"channel": "sms", "recipient": "alice@example.com", "body": "text"},
    {"channel": "sms", "recipient": "+491701234567", "body": "x" * 1601},
    {"channel": "sms", "recipient": "+491701234567", "body": "   "},
])
def test_what_the_service_refuses_the_spec_refuses(body: dict[str, Any]) -> None:
    with pytest.raises(InvalidNotification):
        NotificationRequest.create(**body)
    validator = Draft4Validator(_schema("NotificationCreate"))
    assert not validator.is_valid(body)


def test_the_fuzz_email_generator_targets_the_specs_pattern() -> None:
    from tests.fuzz.support import EMAIL_PATTERN

    recipient = specs.load("notifications")["components"]["schemas"]["EmailCreate"][
        "properties"]["recipient"]
    assert recipient["format"] == "email" and recipient["pattern"] == EMAIL_PATTERN
