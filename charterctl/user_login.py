"""A user token from the command line: the authorization-code + PKCE flow, scripted.

What a browser does with Swagger UI, done with an HTTP client: open the authorize URL,
sign in on the login form (with its CSRF token), allow the consent page, take the
``code`` from the redirect (never followed), and exchange it with the PKCE verifier.
Used by ``charter token --user`` and ``charter demo``.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class LoginError(RuntimeError):
    """The flow did not end with a token (wrong password, denied consent, …)."""


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _csrf(html: str) -> str:
    match = _CSRF.search(html)
    if not match:
        raise LoginError("the page has no CSRF token")
    return match.group(1)


def user_token(
    auth_url: str,
    email: str,
    password: str,
    *,
    scope: str = "",
    client_id: str = "swagger-ui",
    redirect_uri: str,
    timeout: float = 10.0,
) -> dict[str, Any]:
    """Run the code flow for ``email``; return the token response (access + refresh)."""
    verifier, challenge = _pkce()
    state = secrets.token_urlsafe(12)
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri,
              "state": state, "code_challenge": challenge, "code_challenge_method": "S256"}
    if scope:
        params["scope"] = scope
    authorize = f"{auth_url.rstrip('/')}/oauth/authorize?{urlencode(params)}"
    with httpx.Client(timeout=timeout, follow_redirects=False) as http:
        first = http.get(authorize)
        if first.status_code != 302:
            raise LoginError(f"authorize answered {first.status_code}: {first.text[:200]}")
        login_url = urljoin(authorize, first.headers["location"])
        page = http.get(login_url)
        next_url = parse_qs(urlsplit(login_url).query).get("next", [authorize])[0]
        signed_in = http.post(urljoin(login_url, "/login"), data={
            "csrf_token": _csrf(page.text), "email": email, "password": password,
            "next": next_url})
        if signed_in.status_code != 302:
            raise LoginError("login failed (wrong email or password?)")
        consent = http.get(authorize)
        decision = http.post(authorize, data={"csrf_token": _csrf(consent.text),
                                              "decision": "allow"})
        location = decision.headers.get("location", "")
        query = parse_qs(urlsplit(location).query)
        if decision.status_code != 302 or "code" not in query:
            raise LoginError(f"no authorization code: {query.get('error', ['?'])[0]}")
        if query.get("state", [""])[0] != state:
            raise LoginError("state mismatch")
        token = http.post(f"{auth_url.rstrip('/')}/oauth/token", data={
            "grant_type": "authorization_code", "code": query["code"][0],
            "redirect_uri": redirect_uri, "client_id": client_id,
            "code_verifier": verifier})
        if token.status_code != 200:
            raise LoginError(f"token exchange failed: {token.text[:200]}")
        body: dict[str, Any] = token.json()
        return body
