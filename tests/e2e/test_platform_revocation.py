"""Revocation everywhere, on the real platform: a token revoked at auth (RFC 7009) is
refused by the gateway and by every service within 5 seconds.

One ``charter up`` per database kind (SQLite files, then PostgreSQL). After the revocation
the test polls every component (no fixed sleep) until each answers the shared "revoked"
problem, records when, and asserts the slowest within 5 s; then every component must keep
refusing it (several requests, so that every worker is asked).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from charter.security.tokens import token_problem
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


@pytest.fixture(params=["sqlite", "postgres"])
def platform(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Platform]:
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


def test_revoked_token_is_refused_everywhere_within_5_s(platform: Platform) -> None:
    token = platform.token("demo-cli")
    headers = {"Authorization": f"Bearer {token}"}
    revoked_body = token_problem("revoked").body()
    targets = {"gateway": f"{platform.url('gateway')}/catalog{guarded_read('catalog')}"}
    targets.update({s: platform.url(s) + guarded_read(s) for s in SERVICES})

    with platform.client("charter-cli", timeout=5) as http:
        for name, url in targets.items():  # accepted (and cached) everywhere first
            r = http.get(url, headers=headers)
            assert r.status_code != 401, f"{name}: {r.status_code} {r.text}"

        revoke = http.post(f"{platform.url('auth')}/oauth/revoke", data={"token": token},
                           auth=("demo-cli", demo_cli_secret(platform)))
        assert revoke.status_code == 200, revoke.text
        revoked_at = time.monotonic()

        refused_after: dict[str, float] = {}
        while len(refused_after) < len(targets) and time.monotonic() - revoked_at < 15:
            for name, url in targets.items():
                if name in refused_after:
                    continue
                r = http.get(url, headers=headers)
                if r.status_code == 401:
                    assert r.json() == revoked_body, f"{name}: {r.text}"
                    refused_after[name] = time.monotonic() - revoked_at
            time.sleep(0.05)  # polling interval of this loop, not a wait for an outcome

        late = {n: t for n, t in refused_after.items() if t > DEADLINE_S}
        missing = set(targets) - set(refused_after)
        assert not missing and not late, (
            f"not refused: {sorted(missing)}; refused after >5 s: {late}; "
            f"all: {refused_after}")

        for name, url in targets.items():  # every worker behind each port agrees
            for _ in range(6):
                r = http.get(url, headers=headers)
                assert r.status_code == 401 and r.json() == revoked_body, f"{name}: {r.text}"
    print("refused after (s):", {n: round(t, 2) for n, t in sorted(refused_after.items())})
