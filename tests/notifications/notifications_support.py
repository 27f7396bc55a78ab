"""Helpers of the notifications tests: example bodies, a fake provider and a tiny real
SMTP server (the shared helpers — tokens, problems, databases, ports — come from
tests/support/plugin.py).

:class:`SmtpTestServer` speaks enough SMTP over a real socket on 127.0.0.1 (a random
port) for :mod:`smtplib`: EHLO/HELO, STARTTLS (with a CA and certificate of the
development PKI, :mod:`charterctl.pki`, in a temporary folder),
AUTH PLAIN, MAIL, RCPT, DATA, RSET, NOOP, QUIT. It records every message it accepts and
can be told to refuse recipients or logins with a given reply.
"""

from __future__ import annotations

import base64
import socket
import socketserver
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from charter.db import utcnow
from charter.security.credentials import Credentials, credentials
from charterctl.pki import init_pki
from services.notifications.ports import Message, ProviderError, ProviderResult

SMTP_IDENTITY = "smtp-test"

EMAIL: dict[str, Any] = {
    "channel": "email",
    "recipient": "alice@example.com",
    "subject": "Your order ord-1 is confirmed",
    "body": "Hello Alice,\n\nthank you for your order ord-1.",
    "order_id": "ord-1",
    "template": "order-confirmed",
}
SMS: dict[str, Any] = {"channel": "sms", "recipient": "+491701234567",
                       "body": "Order ord-1 shipped.", "order_id": "ord-1"}


# certificates ----------------------------------------------------------------------------
def make_certs(directory: Path) -> Credentials:
    """A CA and a server certificate for 127.0.0.1 / localhost: the development PKI's."""
    init_pki(directory, identities=[SMTP_IDENTITY])
    return credentials(SMTP_IDENTITY, directory)


# the SMTP server -------------------------------------------------------------------------
@dataclass
class Received:
    """One message the server accepted."""

    mail_from: str
    rcpt_to: list[str]
    data: bytes
    tls: bool
    auth_user: str | None

    def text(self) -> str:
        return self.data.decode("utf-8", "replace")


@dataclass
class SmtpTestServer:
    """A threaded SMTP server on 127.0.0.1; use as a context manager."""

    certs: Credentials | None = None   # offer STARTTLS with these
    credentials: tuple[str, str] | None = None  # require AUTH PLAIN with these
    rcpt_reply: str | None = None          # e.g. "550 5.1.1 no such user"
    messages: list[Received] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        owner = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                _Session(owner, self).run()

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._server = Server(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self.lock = threading.Lock()

    def __enter__(self) -> SmtpTestServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def tls_context(self) -> ssl.SSLContext:
        assert self.certs is not None
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.certs.cert, self.certs.key)
        return ctx


class _Session:
    """One SMTP conversation."""

    def __init__(self, server: SmtpTestServer, handler: socketserver.StreamRequestHandler):
        self.server = server
        self.conn: socket.socket = handler.connection
        self.rfile = handler.rfile
        self.wfile = handler.wfile
        self.tls = False
        self.auth_user: str | None = None
        self.reset()

    def reset(self) -> None:
        self.mail_from: str | None = None
        self.rcpt_to: list[str] = []

    def reply(self, *lines: str) -> None:
        out = "".join(f"{line}\r\n" for line in lines)
        self.wfile.write(out.encode())
        self.wfile.flush()

    def run(self) -> None:
        self.reply("220 localhost ESMTP charter-test")
        while True:
            raw = self.rfile.readline(65537)
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            verb, _, arg = line.partition(" ")
            verb = verb.upper()
            with self.server.lock:
                self.server.commands.append(verb if verb != "AUTH" else "AUTH")
            if not self.dispatch(verb, arg):
                return

    def dispatch(self, verb: str, arg: str) -> bool:
        s = self.server
        if verb in ("EHLO", "HELO"):
            ext = ["localhost greets you"]
            if s.certs and not self.tls:
                ext.append("STARTTLS")
            if s.credentials:
                ext.append("AUTH PLAIN")
            ext += ["8BITMIME", "SMTPUTF8"]
            if verb == "HELO":
                ext = ext[:1]
            self.reply(*[f"250-{e}" for e in ext[:-1]], f"250 {ext[-1]}")
        elif verb == "STARTTLS" and s.certs and not self.tls:
            self.reply("220 2.0.0 ready to start TLS")
            try:
                tls_conn = s.tls_context().wrap_socket(self.conn, server_side=True)
            except (ssl.SSLError, OSError):
                return False  # the client refused our certificate
            self.conn = tls_conn
            self.rfile = tls_conn.makefile("rb")
            self.wfile = tls_conn.makefile("wb")
            self.tls = True
            self.reset()
        elif verb == "AUTH":
            mech, _, initial = arg.partition(" ")
            if mech.upper() != "PLAIN" or not s.credentials:
                self.reply("504 5.5.4 unrecognised authentication type")
                return True
            try:
                _, user, password = base64.b64decode(initial).split(b"\0")
            except ValueError:
                self.reply("501 5.5.2 cannot decode")
                return True
            if (user.decode(), password.decode()) == s.credentials:
                self.auth_user = user.decode()
                self.reply("235 2.7.0 authentication successful")
            else:
                self.reply("535 5.7.8 authentication credentials invalid")
        elif verb == "MAIL":
            if s.credentials and not self.auth_user:
                self.reply("530 5.7.0 authentication required")
            else:
                self.mail_from = arg.partition(":")[2].strip().split(" ")[0].strip("<>")
                self.reply("250 2.1.0 ok")
        elif verb == "RCPT":
            if s.rcpt_reply:
                self.reply(s.rcpt_reply)
            else:
                self.rcpt_to.append(arg.partition(":")[2].strip().split(" ")[0].strip("<>"))
                self.reply("250 2.1.5 ok")
        elif verb == "DATA":
            if not self.rcpt_to:
                self.reply("503 5.5.1 no recipients")
                return True
            self.reply("354 end data with <CR><LF>.<CR><LF>")
            lines = []
            while True:
                raw = self.rfile.readline(1_000_000)
                if not raw or raw == b".\r\n":
                    break
                lines.append(raw[1:] if raw.startswith(b"..") else raw)
            with s.lock:
                s.messages.append(Received(self.mail_from or "", list(self.rcpt_to),
                                           b"".join(lines), self.tls, self.auth_user))
            self.reset()
            self.reply("250 2.0.0 queued")
        elif verb == "RSET":
            self.reset()
            self.reply("250 2.0.0 ok")
        elif verb == "NOOP":
            self.reply("250 2.0.0 ok")
        elif verb == "QUIT":
            self.reply("221 2.0.0 bye")
            return False
        else:
            self.reply("502 5.5.2 command not recognised")
        return True


class InMemoryProvider:
    """A fake provider: records messages; ``fail`` makes the next sends raise it."""

    def __init__(self, name: str = "memory") -> None:
        self.name = name
        self.sent: list[Message] = []
        self.fail: ProviderError | None = None
        self._lock = threading.Lock()

    def send(self, message: Message) -> ProviderResult:
        with self._lock:
            if self.fail is not None:
                raise self.fail
            self.sent.append(message)
        return ProviderResult(self.name, utcnow(), reference=f"mem-{len(self.sent)}")
