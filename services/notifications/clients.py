"""Provider adapters: the file/log sink (default), SMTP and a channel router.

The in-memory fake used by the tests lives in ``tests/notifications``.

Which provider delivers what (:func:`make_provider`, from the environment):

* **email** — SMTP when ``SMTP_HOST`` is set, else the file sink;
* **sms** — always the file sink: there is no SMS provider yet; the sink is where an SMS
  gateway adapter would plug in.

The **file sink** appends one JSON line per message (body included) to
``var/notifications/outbox.jsonl`` under :func:`charter.config.var_dir` (or
``NOTIFICATIONS_OUTBOX_PATH``) and logs one line *without* the body and with the
recipient masked. **SMTP** uses :mod:`smtplib`: ``SMTP_HOST``, ``SMTP_PORT`` (587 with
STARTTLS, else 25), ``SMTP_STARTTLS=1`` (certificate verified; ``SMTP_CA_FILE`` for a
private CA), ``SMTP_USER`` / ``SMTP_PASSWORD`` (never logged, not in ``repr``),
``SMTP_FROM``, ``SMTP_TIMEOUT`` seconds (default 10).

Credentials never travel without TLS: ``SMTP_USER`` without ``SMTP_STARTTLS=1`` is a
configuration error at start-up outside development mode, and :class:`SmtpProvider`
refuses to log in unless the connection is TLS-protected (checked on the socket itself,
before ``AUTH``), whatever its settings say.
"""

from __future__ import annotations

import json
import logging
import smtplib
import ssl
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

from charter import config
from charter.db import utcnow

from .domain import Channel, mask_recipient
from .ports import Message, NotificationProvider, ProviderError, ProviderResult
from .settings import NotificationsConfig

log = logging.getLogger(__name__)

DEFAULT_FROM = "Charter <no-reply@charter.localhost>"
DEFAULT_SMTP_TIMEOUT = 10.0
MAX_REASON = 500
PLAINTEXT_AUTH_REFUSED = "refused to send SMTP credentials without TLS (SMTP_STARTTLS)"


def default_outbox_path() -> Path:
    """``NOTIFICATIONS_OUTBOX_PATH``, else ``<var>/notifications/outbox.jsonl``."""
    configured = NotificationsConfig.parse().notifications_outbox_path
    return Path(configured) if configured else config.var_dir() / "notifications" / "outbox.jsonl"


class FileSinkProvider:
    """Appends each message as one JSON line to a file; thread-safe."""

    name = "file"

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or default_outbox_path()
        self._lock = threading.Lock()

    def send(self, message: Message) -> ProviderResult:
        sent_at = utcnow()
        line = json.dumps({
            "id": message.id,
            "channel": str(message.channel),
            "recipient": message.recipient,
            "subject": message.subject,
            "body": message.body,
            "order_id": message.order_id,
            "template": message.template,
            "sent_at": sent_at.isoformat().replace("+00:00", "Z"),
        }, ensure_ascii=False)
        try:
            with self._lock:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a", encoding="utf-8") as fh:
                    fh.write(line + "\n")
        except OSError as exc:
            raise ProviderError(self.name, f"cannot write the outbox: {exc.strerror or exc}",
                                permanent=False) from exc
        log.info("notification written to the outbox", extra={
            "notification_id": message.id, "channel": str(message.channel),
            "recipient": mask_recipient(message.recipient), "provider": self.name,
            "order_id": message.order_id, "template": message.template,
        })
        return ProviderResult(self.name, sent_at, reference=None)


@dataclass(frozen=True)
class SmtpSettings:
    """Where and how to reach the SMTP server. The password never appears in ``repr``."""

    host: str
    port: int = 25
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    sender: str = DEFAULT_FROM
    starttls: bool = False
    timeout: float = DEFAULT_SMTP_TIMEOUT
    ca_file: str | None = None

    @classmethod
    def from_env(cls) -> SmtpSettings | None:
        """The settings when ``SMTP_HOST`` is set, else ``None`` (no SMTP)."""
        cfg = NotificationsConfig.parse()  # typed: a bad SMTP_PORT/SMTP_TIMEOUT is named
        host = cfg.smtp_host
        if not host:
            return None
        starttls = cfg.smtp_starttls
        port = cfg.smtp_port or (587 if starttls else 25)
        timeout = cfg.smtp_timeout
        user = cfg.smtp_user
        password = cfg.smtp_password.get_secret_value() if cfg.smtp_password else None
        if bool(user) != bool(password):
            raise config.ConfigError("SMTP_USER and SMTP_PASSWORD go together")
        if user and not starttls:
            if not config.is_development():
                raise config.ConfigError(
                    "SMTP_USER is set but SMTP_STARTTLS is not: SMTP credentials are never "
                    "sent without TLS (set SMTP_STARTTLS=1)")
            log.warning("SMTP credentials without SMTP_STARTTLS: every email will be "
                        "refused rather than log in without TLS")
        return cls(host=host, port=port, user=user, password=password,
                   sender=cfg.smtp_from or DEFAULT_FROM, starttls=starttls,
                   timeout=timeout, ca_file=cfg.smtp_ca_file)


class SmtpProvider:
    """Sends email through an SMTP server, one connection per message."""

    name = "smtp"

    def __init__(self, settings: SmtpSettings, ssl_context: ssl.SSLContext | None = None) -> None:
        self.settings = settings
        self._ssl_context = ssl_context

    def _context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context(cafile=self.settings.ca_file)
        return self._ssl_context

    def _email(self, message: Message) -> tuple[EmailMessage, str]:
        msg = EmailMessage()
        msg["From"] = self.settings.sender
        msg["To"] = message.recipient
        msg["Subject"] = message.subject or ""
        domain = self.settings.sender.rpartition("@")[2].rstrip(">") or "charter.localhost"
        message_id = make_msgid(idstring=message.id.replace("-", ""), domain=domain)
        msg["Message-ID"] = message_id
        msg["X-Charter-Notification-Id"] = message.id
        if message.order_id:
            msg["X-Charter-Order-Id"] = message.order_id
        msg.set_content(message.body)
        return msg, message_id

    def send(self, message: Message) -> ProviderResult:
        if message.channel is not Channel.EMAIL:
            raise ProviderError(self.name, "SMTP delivers email only", permanent=True)
        msg, message_id = self._email(message)
        s = self.settings
        if s.user and not s.starttls:
            raise ProviderError(self.name, PLAINTEXT_AUTH_REFUSED, permanent=True)
        try:
            with smtplib.SMTP(s.host, s.port, timeout=s.timeout) as smtp:
                smtp.ehlo()
                if s.starttls:
                    smtp.starttls(context=self._context())
                    smtp.ehlo()
                if s.user and s.password:
                    if not isinstance(smtp.sock, ssl.SSLSocket):  # never AUTH in clear
                        raise ProviderError(self.name, PLAINTEXT_AUTH_REFUSED, permanent=True)
                    smtp.login(s.user, s.password)
                smtp.send_message(msg)
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = next(iter(exc.recipients.values()), (550, b"refused"))
            raise self._error(code, text, "recipient refused") from exc
        except smtplib.SMTPResponseException as exc:  # sender refused, data, auth, connect
            raise self._error(exc.smtp_code, exc.smtp_error, "server refused") from exc
        except smtplib.SMTPNotSupportedError as exc:
            raise ProviderError(self.name, f"server does not support it: {exc}",
                                permanent=True) from exc
        except ssl.SSLError as exc:  # certificate not trusted, handshake failed
            raise ProviderError(self.name, f"TLS failed: {exc.reason or exc}",
                                permanent=True) from exc
        except (OSError, smtplib.SMTPException) as exc:  # unreachable, timed out, dropped
            raise ProviderError(self.name, f"server unreachable: {type(exc).__name__}: {exc}"
                                [:MAX_REASON], permanent=False) from exc
        log.info("notification sent by SMTP", extra={
            "notification_id": message.id, "channel": str(message.channel),
            "recipient": mask_recipient(message.recipient), "provider": self.name,
            "smtp_host": s.host, "order_id": message.order_id,
        })
        return ProviderResult(self.name, utcnow(), reference=message_id)

    def _error(self, code: int, text: bytes | str, what: str) -> ProviderError:
        detail = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
        reason = f"{what}: {code} {detail}"[:MAX_REASON]
        return ProviderError(self.name, reason, permanent=code >= 500)


class ChannelRouter:
    """Sends each message through the provider configured for its channel."""

    name = "router"

    def __init__(self, routes: dict[Channel, NotificationProvider]) -> None:
        self.routes = routes

    def provider_for(self, channel: Channel) -> NotificationProvider:
        try:
            return self.routes[channel]
        except KeyError as exc:
            raise ProviderError(self.name, f"no provider for {channel}", permanent=True) from exc

    def send(self, message: Message) -> ProviderResult:
        return self.provider_for(message.channel).send(message)


def make_provider(outbox: Path | None = None) -> ChannelRouter:
    """Email by SMTP when configured (else the sink); SMS always to the sink."""
    sink = FileSinkProvider(outbox)
    settings = SmtpSettings.from_env()
    email: NotificationProvider = SmtpProvider(settings) if settings else sink
    if settings:
        log.info("email goes through SMTP", extra={"smtp_host": settings.host,
                                                   "smtp_port": settings.port,
                                                   "starttls": settings.starttls})
    return ChannelRouter({Channel.EMAIL: email, Channel.SMS: sink})
