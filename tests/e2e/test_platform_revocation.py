"""Revocation everywhere, on the real platform: a token revoked at auth (RFC 7009), and
every token of a user disabled with ``charter users disable``, is refused by the gateway
and by every service within 5 seconds.

One ``charter up`` per database kind (SQLite files, then PostgreSQL), shared by the tests
of this module. After the revocation the test polls every component (no fixed sleep)
until each answers the shared "revoked" problem, records when, and asserts the slowest
within 5 s; then every component must keep refusing it (several requests, so that every
worker is asked).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
import yaml

from charter.problem_types import slug_of
from charter.security.tokens import token_problem
from charterctl.user_login import user_token
from tests.support.platform import COMPONENTS, ROOT, Platform, running

pytestmark = pytest.mark.e2e

SERVICES = [c for c in COMPONENTS if c not in ("auth", "gateway")]
DEADLINE_S = 5.0
ANY_ID = "00000000-0000-0000-0000-000000000001"


def guarded_read(service: str) -> str:
    """A path (under the service) of a GET that needs a token and is not internal-only."""
    spec = yaml.safe_load((ROOT / "openapi" / service / "v1.yaml").read_text())
    default_security = spec.get("security")
    for path, item in spec["paths"].items():
        op = item.get("get")
        if not op or op.get("x-internal-callers") or item.get("x-internal-callers"):
            continue
        if op.get("security", default_security):
            filled = path
            while "{" in filled:
                start_, end = filled.index("{"), filled.index("}")
                filled = filled[:start_] + ANY_ID + filled[end + 1:]
            return "/v1" + filled
    raise AssertionError(f"{service} has no token-guarded GET")


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def platform(request: pytest.FixtureRequest,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """One platform per database kind for every test of this module."""
    tmp_path = tmp_path_factory.mktemp(f"revocation-{request.param}")
    with running(tmp_path, request.param, prefix="charter_rev") as started:
        yield started


def demo_cli_secret(platform: Platform) -> str:
    """The demo client's secret, resolved exactly as ``charter token`` resolves it."""
    done = subprocess.run(
        [sys.executable, "-c",
         "from charterctl.cli import client_secret; print(client_secret('demo-cli', None))"],
        env=platform.env, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def targets_of(platform: Platform) -> dict[str, str]:
    """A token-guarded read per component: the gateway (catalog behind it), every service."""
    targets = {"gateway": f"{platform.url('gateway')}/catalog{guarded_read('catalog')}"}
    targets.update({s: platform.url(s) + guarded_read(s) for s in SERVICES})
    return targets


def assert_accepted_everywhere(http: httpx.Client, targets: dict[str, str],
                               headers: dict[str, str]) -> None:
    """Every component accepts (and caches) the token: anything but 401."""
    for name, url in targets.items():
        r = http.get(url, headers=headers)
        assert r.status_code != 401, f"{name}: {r.status_code} {r.text}"


def refused_everywhere(http: httpx.Client, targets: dict[str, str],
                       headers: dict[str, str], since: float) -> dict[str, float]:
    """Poll every component until each refuses the token with the shared "revoked"
    problem; assert each did within 5 s of ``since`` (monotonic) and that every worker
    keeps refusing it. Returns the seconds each component took."""
    revoked_body = token_problem("revoked").body()
    revoked_slug = slug_of(revoked_body)  # the type's base is each process's public URL
    revoked_rest = {k: v for k, v in revoked_body.items() if k != "type"}
    refused_after: dict[str, float] = {}
    while len(refused_after) < len(targets) and time.monotonic() - since < 15:
        for name, url in targets.items():
            if name in refused_after:
                continue
            r = http.get(url, headers=headers)
            if r.status_code == 401:
                body = r.json()
                assert slug_of(body) == revoked_slug, f"{name}: {r.text}"
                assert {k: v for k, v in body.items() if k != "type"} == revoked_rest, \
                    f"{name}: {r.text}"
                refused_after[name] = time.monotonic() - since
        time.sleep(0.05)  # polling interval of this loop, not a wait for an outcome

    late = {n: t for n, t in refused_after.items() if t > DEADLINE_S}
    missing = set(targets) - set(refused_after)
    assert not missing and not late, (
        f"not refused: {sorted(missing)}; refused after >5 s: {late}; "
        f"all: {refused_after}")

    for name, url in targets.items():  # every worker behind each port agrees
        for _ in range(6):
            r = http.get(url, headers=headers)
            assert r.status_code == 401 and slug_of(r.json()) == revoked_slug, \
                f"{name}: {r.text}"
            assert {k: v for k, v in r.json().items() if k != "type"} == revoked_rest
    return refused_after


def test_revoked_token_is_refused_everywhere_within_5_s(platform: Platform) -> None:
    token = platform.token("demo-cli")
    headers = {"Authorization": f"Bearer {token}"}
    targets = targets_of(platform)

    with platform.client("charter-cli", timeout=5) as http:
        assert_accepted_everywhere(http, targets, headers)

        revoke = http.post(f"{platform.url('auth')}/oauth/revoke", data={"token": token},
                           auth=("demo-cli", demo_cli_secret(platform)))
        assert revoke.status_code == 200, revoke.text
        refused_after = refused_everywhere(http, targets, headers, time.monotonic())
    print("refused after (s):", {n: round(t, 2) for n, t in sorted(refused_after.items())})


def test_disabled_users_tokens_are_refused_everywhere_within_5_s(platform: Platform) -> None:
    """``charter users disable`` (auth's database, like an operator would) revokes every
    token of the user through the feed's ``subject`` entry."""
    alice = user_token(platform.url("auth"), "alice@example.com", "alice-password-1",
                       redirect_uri=f"{platform.url('gateway')}/ui/oauth2-redirect.html")
    headers = {"Authorization": f"Bearer {alice['access_token']}"}
    targets = targets_of(platform)

    with platform.client("charter-cli", timeout=5) as http:
        assert_accepted_everywhere(http, targets, headers)

        done = platform.charter("users", "disable", "alice@example.com")
        assert done.returncode == 0, done.stderr
        disabled_at = time.monotonic()  # committed before the command exited
        assert "alice@example.com" in done.stdout and "disabled" in done.stdout
        refused_after = refused_everywhere(http, targets, headers, disabled_at)

        refreshed = http.post(f"{platform.url('auth')}/oauth/token", data={
            "grant_type": "refresh_token", "refresh_token": alice["refresh_token"],
            "client_id": "swagger-ui"})
        assert refreshed.status_code == 400 and refreshed.json()["error"] == "invalid_grant"
        # Only alice is refused: another subject's fresh token is still accepted.
        other = {"Authorization": f"Bearer {platform.token('demo-cli')}"}
        assert http.get(targets["gateway"], headers=other).status_code != 401
    unknown = platform.charter("users", "disable", "nobody@example.com")
    assert unknown.returncode == 1 and "no account" in unknown.stderr
    print("disabled user refused after (s):",
          {n: round(t, 2) for n, t in sorted(refused_after.items())})
