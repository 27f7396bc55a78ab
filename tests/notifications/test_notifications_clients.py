"""The provider adapters against real files and a real SMTP server on 127.0.0.1."""

from __future__ import annotations

import email
import email.policy
import json
import logging
import smtplib
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from notifications_support import EMAIL, SMS, SmtpTestServer, make_certs

from charter import config
from charter.db import Database
from charter.security.credentials import Credentials
from charter.testing import TokenFactory
from services.notifications.app import create_app
from services.notifications.clients import (
    ChannelRouter,
    FileSinkProvider,
    SmtpProvider,
    SmtpSettings,
    make_provider,
)
from services.notifications.domain import Channel
from services.notifications.ports import Message, ProviderError
from tests.support.plugin import assert_problem, bearer, free_port, run_threads

PASSWORD = "s3cret-smtp-password"


def message(**overrides: Any) -> Message:
    fields: dict[str, Any] = {
        "id": "5b0b7a52-7f0e-4a55-9a43-3a1f0f6f4c11", "channel": Channel.EMAIL,
        "recipient": "alice@example.com", "subject": "Your order ord-1 is confirmed",
        "body": "Hello Alice,\n\nthank you — grüße.\n.\nA line with a dot.",
        "order_id": "ord-1", "template": "order-confirmed",
    }
    fields.update(overrides)
    return Message(**fields)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Credentials:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def smtp() -> Iterator[SmtpTestServer]:
    with SmtpTestServer() as server:
        yield server


# file sink -------------------------------------------------------------------------------
def test_sink_appends_one_json_line_per_message(tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "deep" / "outbox.jsonl"
    sink = FileSinkProvider(path)
    with caplog.at_level(logging.INFO):
        first = sink.send(message())
        sink.send(message(id="second", channel=Channel.SMS, recipient="+491701234567",
                          subject=None, body="Order shipped."))
    assert first.provider == "file" and first.reference is None
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    doc = json.loads(lines[0])
    assert doc == {"id": message().id, "channel": "email", "recipient": "alice@example.com",
                   "subject": message().subject, "body": message().body, "order_id": "ord-1",
                   "template": "order-confirmed", "sent_at": doc["sent_at"]}
    assert json.loads(lines[1])["channel"] == "sms"
    # one log line per message, without the body and with the recipient masked
    records = [r for r in caplog.records if r.name == "services.notifications.clients"]
    assert len(records) == 2
    for record in records:
        text = json.dumps(record.__dict__, default=str)
        assert "thank you" not in text and "Order shipped" not in text
        assert "alice@example.com" not in text and "+491701234567" not in text
    assert records[0].recipient == "a***@example.com"  # type: ignore[attr-defined]


def test_sink_is_safe_under_concurrent_writes(tmp_path: Path) -> None:
    sink = FileSinkProvider(tmp_path / "outbox.jsonl")
    results = run_threads(8, lambda i: [sink.send(message(id=f"{i}-{j}")) for j in range(20)])
    assert not [r for r in results if isinstance(r, BaseException)], results
    lines = (tmp_path / "outbox.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 160 and len({json.loads(x)["id"] for x in lines}) == 160


def test_sink_write_failure_is_a_transient_provider_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with pytest.raises(ProviderError) as info:
        FileSinkProvider(blocker / "outbox.jsonl").send(message())
    assert info.value.permanent is False and info.value.provider == "file"


def test_default_sink_is_under_the_var_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    router = make_provider()
    sink = router.provider_for(Channel.EMAIL)
    assert isinstance(sink, FileSinkProvider)
    assert sink.path == config.var_dir() / "notifications" / "outbox.jsonl"
    assert router.provider_for(Channel.SMS) is sink
    monkeypatch.setenv("NOTIFICATIONS_OUTBOX_PATH", "/tmp/elsewhere.jsonl")
    assert make_provider().routes[Channel.SMS].path == Path(  # type: ignore[attr-defined]
        "/tmp/elsewhere.jsonl")


def test_app_without_smtp_writes_to_the_sink(db: Database, tokens: TokenFactory) -> None:
    app = create_app(db=db, verifier=tokens.verifier())
    headers = bearer(tokens.token(sub="orders", role="service",
                                  scope="notifications:write notifications:read"))
    with app.test_client() as c:
        for i, body in enumerate((EMAIL, SMS)):
            r = c.post("/v1/notifications", json=body,
                       headers={**headers, "Idempotency-Key": f"sink-key-{i:04d}"})
            assert r.status_code == 201 and r.json()["provider"] == "file", r.text
    outbox = config.var_dir() / "notifications" / "outbox.jsonl"
    docs = [json.loads(x) for x in outbox.read_text(encoding="utf-8").splitlines()]
    assert [d["channel"] for d in docs] == ["email", "sms"]
    assert docs[0]["body"] == EMAIL["body"]


# SMTP ------------------------------------------------------------------------------------
def received_email(server: SmtpTestServer) -> email.message.EmailMessage:
    [got] = server.messages
    parsed = email.message_from_bytes(got.data, policy=email.policy.default)
    assert isinstance(parsed, email.message.EmailMessage)
    return parsed


def test_smtp_delivers_to_a_real_server(smtp: SmtpTestServer) -> None:
    provider = SmtpProvider(SmtpSettings(host="127.0.0.1", port=smtp.port,
                                         sender="Charter Shop <shop@charter.example>"))
    result = provider.send(message())
    [got] = smtp.messages
    assert got.mail_from == "shop@charter.example"
    assert got.rcpt_to == ["alice@example.com"]
    assert (got.tls, got.auth_user) == (False, None)
    parsed = received_email(smtp)
    assert parsed["To"] == "alice@example.com"
    assert parsed["Subject"] == "Your order ord-1 is confirmed"
    assert parsed["X-Charter-Notification-Id"] == message().id
    assert parsed["X-Charter-Order-Id"] == "ord-1"
    assert parsed["Message-ID"] == result.reference
    assert result.reference and result.reference.endswith("@charter.example>")
    assert parsed.get_content().replace("\r\n", "\n").rstrip("\n") == message().body
    assert result.provider == "smtp"


def test_smtp_starttls_and_login(certs: Credentials, caplog: pytest.LogCaptureFixture) -> None:
    with SmtpTestServer(certs=certs, credentials=("shop", PASSWORD)) as server:
        settings = SmtpSettings(host="127.0.0.1", port=server.port, user="shop",
                                password=PASSWORD, starttls=True, ca_file=str(certs.ca))
        assert PASSWORD not in repr(settings)
        with caplog.at_level(logging.DEBUG):
            SmtpProvider(settings).send(message())
        [got] = server.messages
        assert (got.tls, got.auth_user) == (True, "shop")
        assert server.commands.index("STARTTLS") < server.commands.index("AUTH")
    assert all(PASSWORD not in json.dumps(r.__dict__, default=str) for r in caplog.records)
    assert all("thank you" not in r.getMessage() for r in caplog.records)


def test_smtp_never_sends_credentials_without_tls() -> None:
    """A server that takes AUTH in clear never sees the password (nor the message)."""
    with SmtpTestServer(credentials=("shop", PASSWORD)) as server:
        provider = SmtpProvider(SmtpSettings(host="127.0.0.1", port=server.port, user="shop",
                                             password=PASSWORD, starttls=False))
        with pytest.raises(ProviderError) as info:
            provider.send(message())
        assert info.value.permanent and "TLS" in info.value.reason
        assert "AUTH" not in server.commands and server.messages == []


def test_smtp_checks_the_socket_not_only_the_setting(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even if STARTTLS were skipped (a bug, a downgrade), no AUTH goes out in clear."""
    with SmtpTestServer(credentials=("shop", PASSWORD)) as server:
        monkeypatch.setattr(smtplib.SMTP, "starttls", lambda self, **kw: (220, b"ok"))
        provider = SmtpProvider(SmtpSettings(host="127.0.0.1", port=server.port, user="shop",
                                             password=PASSWORD, starttls=True))
        with pytest.raises(ProviderError) as info:
            provider.send(message())
        assert info.value.permanent and "TLS" in info.value.reason
        assert "AUTH" not in server.commands and server.messages == []


def test_credentials_without_starttls_are_a_start_up_error_outside_development(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMTP_HOST", "mail.example.com")
    monkeypatch.setenv("SMTP_USER", "shop")
    monkeypatch.setenv("SMTP_PASSWORD", PASSWORD)
    monkeypatch.setenv("CHARTER_ENV", "production")
    with pytest.raises(config.ConfigError, match="SMTP_STARTTLS"):
        SmtpSettings.from_env()
    with pytest.raises(config.ConfigError, match="SMTP_STARTTLS"):
        make_provider()
    monkeypatch.setenv("SMTP_STARTTLS", "1")
    assert SmtpSettings.from_env() is not None
    # development mode starts (with a warning), and the provider refuses at send time
    monkeypatch.delenv("SMTP_STARTTLS")
    monkeypatch.setenv("CHARTER_ENV", "development")
    settings = SmtpSettings.from_env()
    assert settings is not None and not settings.starttls
    with pytest.raises(ProviderError):
        SmtpProvider(settings).send(message())


def test_smtp_refuses_an_untrusted_certificate(certs: Credentials) -> None:
    with SmtpTestServer(certs=certs) as server:
        provider = SmtpProvider(SmtpSettings(host="127.0.0.1", port=server.port,
                                             starttls=True))  # system CAs only
        with pytest.raises(ProviderError) as info:
            provider.send(message())
        assert info.value.permanent and "TLS" in info.value.reason
        assert server.messages == []


def test_smtp_wrong_password_is_permanent(certs: Credentials) -> None:
    with SmtpTestServer(certs=certs, credentials=("shop", PASSWORD)) as server:
        ctx = ssl.create_default_context(cafile=str(certs.ca))
        provider = SmtpProvider(SmtpSettings(host="127.0.0.1", port=server.port, user="shop",
                                             password="wrong", starttls=True), ctx)
        with pytest.raises(ProviderError) as info:
            provider.send(message())
        assert info.value.permanent and "535" in info.value.reason
        assert "wrong" not in info.value.reason


@pytest.mark.parametrize(("reply", "permanent"), [
    ("550 5.1.1 no such user", True),
    ("452 4.2.2 mailbox full, try later", False),
])
def test_smtp_refused_recipient(reply: str, permanent: bool) -> None:
    with SmtpTestServer(rcpt_reply=reply) as server:
        provider = SmtpProvider(SmtpSettings(host="127.0.0.1", port=server.port))
        with pytest.raises(ProviderError) as info:
            provider.send(message())
        assert info.value.permanent is permanent
        assert reply.split(" ", 1)[0] in info.value.reason
        assert server.messages == []


def test_smtp_unreachable_is_transient() -> None:
    provider = SmtpProvider(SmtpSettings(host="127.0.0.1", port=free_port(), timeout=2))
    with pytest.raises(ProviderError) as info:
        provider.send(message())
    assert info.value.permanent is False and "unreachable" in info.value.reason


def test_smtp_only_sends_email() -> None:
    provider = SmtpProvider(SmtpSettings(host="127.0.0.1", port=free_port()))
    with pytest.raises(ProviderError):
        provider.send(message(channel=Channel.SMS, recipient="+491701234567"))


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert SmtpSettings.from_env() is None
    monkeypatch.setenv("SMTP_HOST", "mail.example.com")
    assert SmtpSettings.from_env() == SmtpSettings(host="mail.example.com", port=25)
    monkeypatch.setenv("SMTP_STARTTLS", "1")
    monkeypatch.setenv("SMTP_USER", "shop")
    monkeypatch.setenv("SMTP_PASSWORD", PASSWORD)
    monkeypatch.setenv("SMTP_FROM", "shop@charter.example")
    monkeypatch.setenv("SMTP_TIMEOUT", "3.5")
    settings = SmtpSettings.from_env()
    assert settings is not None
    assert (settings.port, settings.starttls, settings.user, settings.password,
            settings.sender, settings.timeout) == (587, True, "shop", PASSWORD,
                                                   "shop@charter.example", 3.5)
    assert PASSWORD not in repr(settings)
    router = make_provider()
    assert isinstance(router.routes[Channel.EMAIL], SmtpProvider)
    assert isinstance(router.routes[Channel.SMS], FileSinkProvider)
    for name, value in (("SMTP_PORT", "abc"), ("SMTP_PORT", "70000"), ("SMTP_TIMEOUT", "0")):
        monkeypatch.setenv(name, value)
        with pytest.raises(config.ConfigError):
            SmtpSettings.from_env()
        monkeypatch.delenv(name)
    monkeypatch.delenv("SMTP_PASSWORD")
    with pytest.raises(config.ConfigError):
        SmtpSettings.from_env()


def test_router_refuses_a_channel_without_provider() -> None:
    with pytest.raises(ProviderError):
        ChannelRouter({}).send(message())


def test_api_sends_email_by_smtp_and_sms_to_the_sink(
    db: Database, tokens: TokenFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    headers = bearer(tokens.token(sub="orders", role="service",
                                  scope="notifications:write notifications:read"))
    with SmtpTestServer() as server:
        monkeypatch.setenv("SMTP_HOST", "127.0.0.1")
        monkeypatch.setenv("SMTP_PORT", str(server.port))
        monkeypatch.setenv("SMTP_FROM", "shop@charter.example")
        app = create_app(db=db, verifier=tokens.verifier())
        with app.test_client() as c:
            r = c.post("/v1/notifications", json=EMAIL,
                       headers={**headers, "Idempotency-Key": "smtp-key-0001"})
            assert r.status_code == 201, r.text
            assert r.json()["provider"] == "smtp" and r.json()["provider_reference"]
            again = c.post("/v1/notifications", json=EMAIL,
                           headers={**headers, "Idempotency-Key": "smtp-key-0001"})
            assert again.json() == r.json()
            assert len(server.messages) == 1
            assert received_email(server)["X-Charter-Notification-Id"] == r.json()["id"]
            sms = c.post("/v1/notifications", json=SMS,
                         headers={**headers, "Idempotency-Key": "smtp-key-0002"})
            assert sms.status_code == 201 and sms.json()["provider"] == "file"
            assert len(server.messages) == 1
    outbox = config.var_dir() / "notifications" / "outbox.jsonl"
    assert [json.loads(x)["channel"] for x in outbox.read_text().splitlines()] == ["sms"]


def test_api_with_smtp_refusing_and_down(db: Database, tokens: TokenFactory,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    headers = bearer(tokens.token(sub="orders", role="service",
                                  scope="notifications:write notifications:read"))
    with SmtpTestServer(rcpt_reply="550 5.1.1 unknown user") as server:
        monkeypatch.setenv("SMTP_HOST", "127.0.0.1")
        monkeypatch.setenv("SMTP_PORT", str(server.port))
        app = create_app(db=db, verifier=tokens.verifier())
        with app.test_client() as c:
            r = c.post("/v1/notifications", json=EMAIL,
                       headers={**headers, "Idempotency-Key": "smtp-fail-0001"})
            problem = assert_problem(r, 502)
            record = c.get(f"/v1/notifications/{problem['notification_id']}",
                           headers=headers).json()
            assert record["status"] == "failed" and "550" in record["failure_reason"]
    monkeypatch.setenv("SMTP_PORT", str(free_port()))
    monkeypatch.setenv("SMTP_TIMEOUT", "2")
    app = create_app(db=db, verifier=tokens.verifier())
    with app.test_client() as c:
        r = c.post("/v1/notifications", json=EMAIL,
                   headers={**headers, "Idempotency-Key": "smtp-fail-0001"})
        assert_problem(r, 503)
        failed = c.get("/v1/notifications?status=failed", headers=headers).json()
        assert failed["total"] == 2
