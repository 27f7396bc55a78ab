"""OAuth 2 conformance, as an outside client sees auth over HTTP (RFC 6749, 7636, 7009,
7662, 9700): a browser with cookies and CSRF-protected forms, PKCE, refresh rotation with
reuse detection, introspection and revocation with and without hints, §5.2 errors."""

from __future__ import annotations

import base64
import hashlib
import secrets
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from conformance_support import RS, SPA, SPA_REDIRECT, USER, WEB, WEB_REDIRECTS, Auth, form


def basic(client_id: str, secret: str) -> dict[str, str]:
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(64)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge.rstrip(b"=").decode()


def query(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def authorize_path(client_id: str, challenge: str | None, redirect_uri: str | None,
                   method: str = "S256", state: str = "xyz-state", scope: str = "") -> str:
    params = {"response_type": "code", "client_id": client_id, "state": state}
    if redirect_uri:
        params["redirect_uri"] = redirect_uri
    if challenge is not None:
        params.update(code_challenge=challenge, code_challenge_method=method)
    if scope:
        params["scope"] = scope
    return "/oauth/authorize?" + urlencode(params)


def browser_login(browser: httpx.Client, start: str) -> httpx.Response:
    """Follow the authorization request to the login page, fill it in, come back."""
    first = browser.get(start)
    assert first.status_code == 302 and first.headers["location"].startswith("/login?")
    page = browser.get(first.headers["location"])
    assert page.status_code == 200
    login = form(page.text, "password")
    fields = {k: v[0] for k, v in login["fields"].items()}
    fields.update(email=USER[0], password=USER[1])
    done = browser.post(login["action"], data=fields)
    assert done.status_code == 302, done.text
    assert done.headers["location"] == start  # back to the authorization request
    return done


def consent(browser: httpx.Client, start: str, decision: str = "allow") -> httpx.Response:
    page = browser.get(start)
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    choice = form(page.text, "decision")
    assert set(choice["buttons"]["decision"]) == {"allow", "deny"}
    fields = {k: v[0] for k, v in choice["fields"].items()}
    return browser.post(choice["action"], data={**fields, "decision": decision})


def get_code(auth: Auth, client_id: str = SPA, redirect_uri: str = SPA_REDIRECT
             ) -> tuple[str, str]:
    verifier, challenge = pkce_pair()
    start = authorize_path(client_id, challenge, redirect_uri)
    with auth.client() as browser:
        browser_login(browser, start)
        answer = consent(browser, start)
    assert answer.status_code == 302
    assert answer.headers["location"].startswith(redirect_uri + "?")
    params = query(answer.headers["location"])
    assert params["state"] == "xyz-state"
    return params["code"], verifier


def token(auth: Auth, data: dict[str, str], headers: dict[str, str] | None = None
          ) -> httpx.Response:
    with auth.client() as http:
        return http.post("/oauth/token", data=data, headers=headers or {})


def spa_tokens(auth: Auth) -> dict[str, Any]:
    code, verifier = get_code(auth)
    response = token(auth, {"grant_type": "authorization_code", "code": code,
                            "redirect_uri": SPA_REDIRECT, "client_id": SPA,
                            "code_verifier": verifier})
    assert response.status_code == 200, response.text
    return dict(response.json())


def web_tokens(auth: Auth) -> dict[str, Any]:
    code, verifier = get_code(auth, WEB[0], WEB_REDIRECTS[1])
    response = token(auth, {"grant_type": "authorization_code", "code": code,
                            "redirect_uri": WEB_REDIRECTS[1], "code_verifier": verifier},
                     basic(*WEB))
    assert response.status_code == 200, response.text
    return dict(response.json())


def introspect(auth: Auth, value: str, hint: str | None = None,
               creds: tuple[str, str] = RS) -> httpx.Response:
    data = {"token": value} | ({"token_type_hint": hint} if hint else {})
    with auth.client() as http:
        return http.post("/oauth/introspect", data=data, headers=basic(*creds))


def revoke(auth: Auth, value: str, hint: str | None = None,
           headers: dict[str, str] | None = None, **form_fields: str) -> httpx.Response:
    data = {"token": value, **form_fields} | ({"token_type_hint": hint} if hint else {})
    with auth.client() as http:
        return http.post("/oauth/revoke", data=data, headers=headers or {})


def refresh(auth: Auth, value: str) -> httpx.Response:
    return token(auth, {"grant_type": "refresh_token", "refresh_token": value,
                        "client_id": SPA})


# --- browser flow ------------------------------------------------------------------------


def test_code_flow_with_pkce_cookies_and_csrf(auth_server: Auth) -> None:
    code, verifier = get_code(auth_server)
    response = token(auth_server, {"grant_type": "authorization_code", "code": code,
                                   "redirect_uri": SPA_REDIRECT, "client_id": SPA,
                                   "code_verifier": verifier})
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] > 0
    assert body["refresh_token"] and body["access_token"].count(".") == 2
    assert set(body["scope"].split()) <= {"catalog:read", "cart:read"}


def test_session_cookie_is_http_only_and_same_site(auth_server: Auth) -> None:
    with auth_server.client() as browser:
        page = browser.get("/login")
    cookie = page.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie


def test_login_and_consent_refuse_a_missing_or_foreign_csrf_token(auth_server: Auth) -> None:
    verifier, challenge = pkce_pair()
    start = authorize_path(SPA, challenge, SPA_REDIRECT)
    with auth_server.client() as browser, auth_server.client() as other:
        other_csrf = form(other.get("/login").text, "password")["fields"]["csrf_token"][0]
        browser.get("/login")
        forged = browser.post("/login", data={"email": USER[0], "password": USER[1],
                                              "csrf_token": other_csrf, "next": "/"})
        assert forged.status_code == 400 and "location" not in forged.headers
        browser_login(browser, start)
        refused = browser.post(start, data={"decision": "allow", "csrf_token": other_csrf})
        assert refused.status_code == 400 and "location" not in refused.headers


def test_deny_redirects_with_access_denied_and_state(auth_server: Auth) -> None:
    _verifier, challenge = pkce_pair()
    start = authorize_path(SPA, challenge, SPA_REDIRECT)
    with auth_server.client() as browser:
        browser_login(browser, start)
        answer = consent(browser, start, decision="deny")
    params = query(answer.headers["location"])
    assert params == {"error": "access_denied", "state": "xyz-state"} | (
        {"error_description": params["error_description"]} if "error_description" in params
        else {})


def test_plain_pkce_is_refused(auth_server: Auth) -> None:
    start = authorize_path(SPA, "a" * 64, SPA_REDIRECT, method="plain")
    with auth_server.client() as browser:
        browser_login(browser, authorize_path(SPA, pkce_pair()[1], SPA_REDIRECT))
        answer = browser.get(start)
    assert answer.status_code == 302
    assert query(answer.headers["location"])["error"] == "invalid_request"


def test_missing_pkce_is_refused(auth_server: Auth) -> None:
    with auth_server.client() as browser:
        browser_login(browser, authorize_path(SPA, pkce_pair()[1], SPA_REDIRECT))
        answer = browser.get(authorize_path(SPA, None, SPA_REDIRECT))
    assert query(answer.headers["location"])["error"] == "invalid_request"


def test_wrong_code_verifier_is_refused(auth_server: Auth) -> None:
    code, _verifier = get_code(auth_server)
    response = token(auth_server, {"grant_type": "authorization_code", "code": code,
                                   "redirect_uri": SPA_REDIRECT, "client_id": SPA,
                                   "code_verifier": pkce_pair()[0]})
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


def test_redirect_uri_required_when_several_are_registered(auth_server: Auth) -> None:
    with auth_server.client() as browser:
        browser_login(browser, authorize_path(SPA, pkce_pair()[1], SPA_REDIRECT))
        answer = browser.get(authorize_path(WEB[0], pkce_pair()[1], None))
    assert answer.status_code == 400 and "location" not in answer.headers
    assert "redirect_uri" in answer.text


def test_code_replay_is_refused_and_revokes_the_first_tokens(auth_server: Auth) -> None:
    code, verifier = get_code(auth_server)
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": SPA_REDIRECT,
            "client_id": SPA, "code_verifier": verifier}
    first = token(auth_server, data).json()
    replay = token(auth_server, data)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    assert introspect(auth_server, first["access_token"]).json() == {"active": False}
    assert refresh(auth_server, first["refresh_token"]).status_code == 400


# --- refresh tokens ----------------------------------------------------------------------


def test_refresh_rotation_and_reuse_detection(auth_server: Auth) -> None:
    first = spa_tokens(auth_server)
    second = refresh(auth_server, first["refresh_token"])
    assert second.status_code == 200
    rotated = second.json()
    assert rotated["refresh_token"] != first["refresh_token"]
    newest = refresh(auth_server, rotated["refresh_token"]).json()

    reused = refresh(auth_server, first["refresh_token"])  # a stolen, already-used token
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
    # Reuse revokes the whole family, the legitimate newest token included.
    assert refresh(auth_server, newest["refresh_token"]).status_code == 400


# --- introspection and revocation --------------------------------------------------------


@pytest.mark.parametrize("hint", [None, "access_token", "refresh_token"])
def test_introspect_access_token_with_any_hint(auth_server: Auth, hint: str | None) -> None:
    access = spa_tokens(auth_server)["access_token"]
    body = introspect(auth_server, access, hint).json()
    assert body["active"] is True and body["client_id"] == SPA
    assert body["username"] == USER[0] and body["token_type"] == "Bearer"


@pytest.mark.parametrize("hint", [None, "access_token", "refresh_token"])
def test_introspect_refresh_token_with_any_hint(auth_server: Auth, hint: str | None) -> None:
    refresh_token = web_tokens(auth_server)["refresh_token"]
    body = introspect(auth_server, refresh_token, hint, creds=WEB).json()
    assert body["active"] is True and body["token_type"] == "refresh_token"
    # Another client learns nothing about it.
    assert introspect(auth_server, refresh_token, hint).json() == {"active": False}


def test_introspection_needs_an_authenticated_confidential_client(auth_server: Auth) -> None:
    access = spa_tokens(auth_server)["access_token"]
    with auth_server.client() as http:
        anonymous = http.post("/oauth/introspect", data={"token": access, "client_id": SPA})
    assert anonymous.status_code == 401 and anonymous.json()["error"] == "invalid_client"
    assert introspect(auth_server, "garbage").json() == {"active": False}
    unknown_hint = introspect(auth_server, access, "id_token")
    assert unknown_hint.status_code == 400, unknown_hint.text
    assert unknown_hint.json()["error"] == "unsupported_token_type"


@pytest.mark.parametrize("hint", [None, "access_token", "refresh_token"])
def test_revoke_access_token_with_any_hint(auth_server: Auth, hint: str | None) -> None:
    access = spa_tokens(auth_server)["access_token"]
    assert revoke(auth_server, access, hint, client_id=SPA).status_code == 200
    assert introspect(auth_server, access).json() == {"active": False}


@pytest.mark.parametrize("hint", [None, "access_token", "refresh_token"])
def test_revoke_refresh_token_with_any_hint(auth_server: Auth, hint: str | None) -> None:
    tokens = spa_tokens(auth_server)
    refresh_token = tokens["refresh_token"]
    assert introspect(auth_server, tokens["access_token"]).json()["active"] is True
    assert revoke(auth_server, refresh_token, hint, client_id=SPA).status_code == 200
    # RFC 7009 §2.1: the grant goes with it, its access token included.
    assert introspect(auth_server, tokens["access_token"]).json() == {"active": False}
    assert refresh(auth_server, refresh_token).status_code == 400


def test_revocation_of_unknown_or_foreign_tokens(auth_server: Auth) -> None:
    assert revoke(auth_server, "never-issued", client_id=SPA).status_code == 200  # §2.2
    access = spa_tokens(auth_server)["access_token"]
    foreign = revoke(auth_server, access, headers=basic(*RS))
    assert foreign.status_code == 400
    assert introspect(auth_server, access).json()["active"] is True


# --- RFC 6749 §5.2 error responses -------------------------------------------------------


def _error(response: httpx.Response, status: int, error: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = dict(response.json())
    assert body["error"] == error
    return body


def test_invalid_request(auth_server: Auth) -> None:
    _error(token(auth_server, {"grant_type": "authorization_code", "client_id": SPA,
                               "redirect_uri": SPA_REDIRECT}), 400, "invalid_request")


def test_invalid_client_with_basic_is_401_with_www_authenticate(auth_server: Auth) -> None:
    response = token(auth_server, {"grant_type": "client_credentials"},
                     basic(RS[0], "not-the-secret"))
    _error(response, 401, "invalid_client")
    assert response.headers["www-authenticate"].lower().startswith("basic")
    _error(token(auth_server, {"grant_type": "client_credentials"},
                 basic("no-such-client", "x")), 401, "invalid_client")


def test_invalid_grant(auth_server: Auth) -> None:
    _error(token(auth_server, {"grant_type": "authorization_code", "code": "made-up",
                               "redirect_uri": SPA_REDIRECT, "client_id": SPA,
                               "code_verifier": pkce_pair()[0]}), 400, "invalid_grant")


def test_unauthorized_client(auth_server: Auth) -> None:
    _error(token(auth_server, {"grant_type": "refresh_token", "refresh_token": "x"},
                 basic(*RS)), 400, "unauthorized_client")


def test_unsupported_grant_type(auth_server: Auth) -> None:
    _error(token(auth_server, {"grant_type": "password", "username": USER[0],
                               "password": USER[1]}, basic(*RS)), 400,
           "unsupported_grant_type")


def test_invalid_scope(auth_server: Auth) -> None:
    _error(token(auth_server, {"grant_type": "client_credentials", "scope": "root:all"},
                 basic(*RS)), 400, "invalid_scope")
