"""Helpers of the notifications tests: tokens, problems, and a tiny real SMTP server.

:class:`SmtpTestServer` speaks enough SMTP over a real socket on 127.0.0.1 (a random
port) for :mod:`smtplib`: EHLO/HELO, STARTTLS (with a throw-away CA and certificate),
AUTH PLAIN, MAIL, RCPT, DATA, RSET, NOOP, QUIT. It records every message it accepts and
can be told to refuse recipients or logins with a given reply.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import socket
import socketserver
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from charter import migrations
from charter.db import Database, utcnow
from services.notifications.app import MIGRATIONS_DIR
from services.notifications.ports import Message, ProviderError, ProviderResult

PROBLEM = "application/problem+json"

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


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def migrated(url: str) -> Database:
    """A database at ``url`` brought to the newest notifications revision."""
    migrations.upgrade("notifications", MIGRATIONS_DIR, url)
    return Database(url)


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["title"]
    return body


# certificates ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Certs:
    ca: Path
    cert: Path
    key: Path


def make_certs(directory: Path) -> Certs:
    """A CA and a server certificate for 127.0.0.1 / localhost signed by it."""
    now = dt.datetime.now(dt.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder().subject_name(name("test CA")).issuer_name(name("test CA"))
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder().subject_name(name("localhost")).issuer_name(ca.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    out = Certs(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    out.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    out.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    out.key.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return out


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

    certs: Certs | None = None         # offer STARTTLS with these
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


def free_port() -> int:
    """A port nothing listens on (bound and released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


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
