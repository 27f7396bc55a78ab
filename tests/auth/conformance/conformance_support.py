"""What the conformance suite knows as an outside client: its clients, its user, a form
parser for the login and consent pages, and how the server under test is reached."""

from __future__ import annotations

from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any

import httpx

from auth import accounts
from auth.store import Client
from charter.db import Database

USER = ("conformance@example.com", "conformance-password-1")
SPA = "conf-spa"  # public client: code + PKCE + refresh, one redirect URI
WEB = ("conf-web", "conf-web-secret-value")  # confidential code client, two redirect URIs
RS = ("conf-rs", "conf-rs-secret-value")  # confidential resource server / service
SPA_REDIRECT = "http://127.0.0.1:9/spa/cb"
WEB_REDIRECTS = ["http://127.0.0.1:9/web/cb", "http://127.0.0.1:9/web/other"]


@dataclass
class Auth:
    """Where the server under test listens."""

    base_url: str
    db: Database

    def client(self, **kwargs: Any) -> httpx.Client:
        """A fresh user agent with its own cookie jar (redirects are not followed)."""
        return httpx.Client(base_url=self.base_url, follow_redirects=False, timeout=10,
                            **kwargs)


def register(db: Database) -> None:
    """The suite's user and clients."""
    def client(client_id: str, secret: str | None, **fields: Any) -> Client:
        item = Client(client_id=client_id, client_name=client_id, **fields)
        item.set_secret(secret)
        return item

    with db.session() as session:
        accounts.create_user(session, *USER)
        session.add_all([
            client(SPA, None, grant_types=["authorization_code", "refresh_token"],
                   response_types=["code"], redirect_uris=[SPA_REDIRECT],
                   scope="catalog:read cart:read", token_endpoint_auth_method="none"),
            client(WEB[0], WEB[1], grant_types=["authorization_code", "refresh_token"],
                   response_types=["code"], redirect_uris=WEB_REDIRECTS,
                   scope="catalog:read cart:read",
                   token_endpoint_auth_method="client_secret_basic"),
            client(RS[0], RS[1], grant_types=["client_credentials"], response_types=[],
                   redirect_uris=[], scope="catalog:read",
                   token_endpoint_auth_method="client_secret_basic"),
        ])


class Forms(HTMLParser):
    """The forms of a page: action, method and every input's name and value."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "form":
            self.forms.append({"action": values.get("action") or "",
                               "method": (values.get("method") or "get").lower(),
                               "fields": {}, "buttons": {}})
        elif tag in ("input", "button") and self.forms and values.get("name"):
            kind = "buttons" if tag == "button" or values.get("type") == "submit" else "fields"
            self.forms[-1][kind].setdefault(values["name"], []).append(values.get("value") or "")


def form(html: str, containing: str) -> dict[str, Any]:
    """The page's form that has a field or button named ``containing``."""
    for item in Forms(html).forms:
        if containing in item["fields"] or containing in item["buttons"]:
            return item
    raise AssertionError(f"no form with {containing!r} in page")
