"""Verifying one pact file against its provider, served for real.

The provider's Connexion app runs on a fresh, migrated SQLite database under uvicorn in a
thread of this process (Pact's function state handlers must run in the provider's process),
with mutual TLS exactly as deployed (``charter.serve``'s protocol: the peer certificate
reaches the internal-callers check). The verifier reaches it through a
:class:`~tests.contracts.provider.relay.TlsRelay` presenting the consumer's certificate,
and sends a real token of the consumer (minted by the test ``TokenFactory`` the provider
trusts) as a custom ``Authorization`` header, replacing the pact's example token.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pact import Verifier

from charter import dependencies
from charter.security import mtls
from charter.serve import uvicorn_tls_config
from charter.testing import TokenFactory
from tests.contracts import pacts
from tests.contracts.provider.relay import TlsRelay
from tests.contracts.provider.states import PROVIDERS, ProviderStates
from tests.support.databases import migrated_database
from tests.support.servers import ThreadServer


def consumer_token(tokens: TokenFactory, consumer: str, provider: str) -> str:
    """The token ``consumer`` sends ``provider``, as the dependency manifest says.

    Its own client-credentials token (``sub`` = ``client_id`` = the consumer, role
    ``service``, the scopes derived from its ``calls``) when it calls the provider with its
    own identity; otherwise the customer's token it forwards (``on_behalf_of_user``).
    """
    manifest = dependencies.load()
    entry = manifest.service(consumer)
    if any(call.api == provider for call in entry.calls):
        return tokens.token(sub=consumer, scope=manifest.client_scope(consumer),
                            role="service", client_id=consumer)
    scopes = sorted({scope for call in entry.on_behalf_of_user if call.api == provider
                     for scope in dependencies.operation(call).scopes})
    return tokens.token(sub=pacts.CUSTOMER, scope=" ".join(scopes), role="customer")


@dataclass
class RunningProvider:
    """A provider app over mTLS, and the relay in front of it presenting ``consumer``."""

    states: ProviderStates
    server: ThreadServer
    relay: ThreadServer


@contextlib.contextmanager
def running_provider(provider: str, consumer: str, tokens: TokenFactory, pki_dir: Path,
                     workdir: Path) -> Iterator[RunningProvider]:
    """Start ``provider`` on a fresh database and a relay as ``consumer``; stop both after."""
    db = migrated_database(provider, f"sqlite:///{workdir / f'{provider}.db'}")
    states = PROVIDERS[provider](db, workdir)
    app = states.app(tokens.verifier())
    server = ThreadServer(app, **uvicorn_tls_config(provider, pki_dir, force=True)).start()
    relay = ThreadServer(TlsRelay(server.url, mtls.client_ssl_context(consumer, pki_dir)))
    try:
        relay.start()
        yield RunningProvider(states, server, relay)
    finally:
        relay.stop()
        server.stop()
        db.dispose()


def verify(pact_file: Path, running: RunningProvider, token: str) -> float:
    """Replay every interaction of ``pact_file``; the seconds it took. Fails the test with
    the verifier's own output when any interaction does not hold."""
    provider = running.states.name
    verifier = (
        Verifier(provider, host="127.0.0.1")
        .add_transport(url=running.relay.url)
        .add_source(pact_file)
        .state_handler(running.states.handle, teardown=True)
        .add_custom_header("Authorization", f"Bearer {token}")
        .set_coloured_output(enabled=False)
    )
    started = time.monotonic()
    try:
        verifier.verify()
        failed = False
    except RuntimeError:  # pact raises a bare RuntimeError: its output says what broke
        failed = True
    if failed:
        pytest.fail(f"{provider} does not honour {pact_file.name} (the Pact verifier's "
                    f"report follows):\n{verifier.output(strip_ansi=True)}", pytrace=False)
    return time.monotonic() - started
