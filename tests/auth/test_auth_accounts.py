"""Registration (JSON and form), login, logout, session cookie."""

from __future__ import annotations

from auth_helpers import ALICE, csrf_from, login

from auth.accounts import find_by_email
from tests.support.plugin import assert_problem


def register_json(client, email, password):
    return client.post("/register", json={"email": email, "password": password})


def test_register_json_creates_user_with_argon2id_hash(client, db):
    response = register_json(client, "  Bob@Example.com ", "correct-horse-battery")
    assert response.status_code == 201
    body = response.get_json()
    assert body["email"] == "bob@example.com" and body["role"] == "customer"
    with db.session() as session:
        user = find_by_email(session, "bob@example.com")
        assert user is not None
        assert user.id == body["id"]
        assert user.password_hash.startswith("$argon2id$")


def test_duplicate_email_is_409_problem(client):
    assert register_json(client, "carol@example.com", "long-enough-pw").status_code == 201
    response = register_json(client, "CAROL@example.com", "another-long-pw")
    assert assert_problem(response, 409)["type"]


def test_short_password_is_problem(client):
    response = register_json(client, "dave@example.com", "short")
    assert response.status_code in (400, 422)
    assert "10" in assert_problem(response, response.status_code)["detail"]


def test_invalid_json_body_is_problem(client):
    response = client.post("/register", data="[]", content_type="application/json")
    assert_problem(response, 400)


def test_register_form_signs_in(client, db):
    page = client.get("/register")
    assert page.status_code == 200
    response = client.post(
        "/register",
        data={"csrf_token": csrf_from(page.get_data(as_text=True)),
              "email": "erin@example.com", "password": "erin-password-1", "next": "/"},
    )
    assert response.status_code == 302
    assert "erin@example.com" in client.get("/").get_data(as_text=True)


def test_register_form_requires_csrf(client):
    response = client.post(
        "/register", data={"email": "frank@example.com", "password": "frank-password-1"}
    )
    assert response.status_code == 400


def test_login_with_wrong_password_fails(client):
    response = login(client, ALICE[0], "wrong-password")
    assert response.status_code == 401
    assert "Sign-in failed. Check your email and password" in response.get_data(as_text=True)
    assert "alice@example.com" not in client.get("/").get_data(as_text=True)


def test_login_unknown_user_fails(client):
    assert login(client, "nobody@example.com", "whatever-password").status_code == 401


def test_login_sets_httponly_lax_cookie_and_logout_clears(client):
    response = login(client, *ALICE)
    assert response.status_code == 302
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    home = client.get("/").get_data(as_text=True)
    assert "alice@example.com" in home
    out = client.post("/logout", data={"csrf_token": csrf_from(home)})
    assert out.status_code == 302
    assert "alice@example.com" not in client.get("/").get_data(as_text=True)


def test_login_does_not_redirect_off_site(client):
    response = login(client, *ALICE, next_url="//evil.example/")
    assert response.headers["Location"] == "/"


def test_pages_carry_security_headers(client):
    response = client.get("/login")
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
