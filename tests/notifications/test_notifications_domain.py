"""What a valid message is: recipients per channel, subjects, lengths, masking."""

from __future__ import annotations

import pytest

from services.notifications import domain
from services.notifications.domain import (
    Channel,
    InvalidNotification,
    NotificationRequest,
    mask_recipient,
    normalise_recipient,
)


@pytest.mark.parametrize(("given", "expected"), [
    ("alice@example.com", "alice@example.com"),
    ("Alice.Smith+shop@Example.COM", "Alice.Smith+shop@example.com"),
    ("  bob@mail.example.org ", "bob@mail.example.org"),
    ("o'neil@example.ie", "o'neil@example.ie"),
])
def test_valid_emails(given: str, expected: str) -> None:
    assert normalise_recipient(Channel.EMAIL, given) == expected


@pytest.mark.parametrize("bad", [
    "alice", "alice@", "@example.com", "alice@example", "alice@@example.com",
    "alice@exa mple.com", "alice example@example.com", "alice@example.com\r\nBcc: x@y.z",
    "a@b.c", "alice@-example.com", ".alice@example.com", "alice..x@example.com",
    "x" * 65 + "@example.com", "a@" + "b" * 250 + ".com", "+491701234567",
    "alice@example.com,bob@example.com", "<alice@example.com>",
])
def test_invalid_emails(bad: str) -> None:
    with pytest.raises(InvalidNotification):
        normalise_recipient(Channel.EMAIL, bad)


@pytest.mark.parametrize("good", ["+491701234567", "+14155550123", "+4412345"])
def test_valid_phones(good: str) -> None:
    assert normalise_recipient(Channel.SMS, good) == good


@pytest.mark.parametrize("bad", ["0170 1234567", "491701234567", "+0123456789",
                                 "+12", "+1234567890123456", "alice@example.com", "+49-170"])
def test_invalid_phones(bad: str) -> None:
    with pytest.raises(InvalidNotification):
        normalise_recipient(Channel.SMS, bad)


def test_request_rules() -> None:
    ok = NotificationRequest.create(channel="email", recipient="a@Example.com", subject="Hi",
                                    body="Hello")
    assert (ok.channel, ok.recipient) == (Channel.EMAIL, "a@example.com")
    sms = NotificationRequest.create(channel="sms", recipient="+491701234567", body="x" * 1600)
    assert sms.subject is None
    bad = [
        {"channel": "fax", "recipient": "a@example.com", "subject": "s", "body": "b"},
        {"channel": "email", "recipient": "a@example.com", "body": "b"},  # no subject
        {"channel": "email", "recipient": "a@example.com", "subject": "  ", "body": "b"},
        {"channel": "email", "recipient": "a@example.com", "subject": "a\nb", "body": "b"},
        {"channel": "email", "recipient": "a@example.com", "subject": "a\x00", "body": "b"},
        {"channel": "email", "recipient": "a@example.com", "subject": "s" * 201, "body": "b"},
        {"channel": "email", "recipient": "a@example.com", "subject": "s", "body": "   "},
        {"channel": "email", "recipient": "a@example.com", "subject": "s",
         "body": "b" * (domain.MAX_BODY + 1)},
        {"channel": "sms", "recipient": "+491701234567", "body": "x" * 1601},
    ]
    for kwargs in bad:
        with pytest.raises(InvalidNotification):
            NotificationRequest.create(**kwargs)


def test_masking_hides_most_of_the_recipient() -> None:
    assert mask_recipient("alice@example.com") == "a***@example.com"
    assert mask_recipient("+491701234567") == "+49***67"
    assert mask_recipient("+1234") == "***"
    assert len(domain.new_id()) == 36 and domain.new_id() != domain.new_id()
