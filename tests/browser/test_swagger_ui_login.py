"""Swagger UI login in a real browser, through the gateway: portal → an API's Swagger UI
→ Authorize (authorization code + PKCE, logging in as alice) → Try it out → 200.

Drives Debian's headless Chromium with Playwright against the whole ``charter up``
(mTLS between the gateway and the services). A screenshot and the page's HTML land in
``test-output/`` when a step fails.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.databases import skip_or_fail
from tests.support.platform import ROOT, Platform, start, stop

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
OUTPUT = ROOT / "test-output"


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    if not Path(CHROMIUM).exists():
        skip_or_fail("Debian's chromium is not installed (make test installs it as root)")
    running = start(tmp_path_factory.mktemp("browser"), {"GATEWAY_RATE_LIMIT": "0"})
    yield running
    stop(running)


def test_authorize_with_pkce_then_try_it_out(platform: Platform) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context()
        page = context.new_page()
        try:
            gateway = platform.url("gateway")
            page.goto(f"{gateway}/")
            page.click("a[href='/catalog/v1/ui/']")
            page.wait_for_url("**/catalog/v1/ui/")
            page.click("button.btn.authorize")
            code_flow = page.locator(".auth-container").filter(has_text="authorizationCode")
            with context.expect_page() as popup_info:
                code_flow.locator("button.authorize").click()
            login = popup_info.value
            login.wait_for_load_state()
            assert "/login" in login.url
            login.fill("input[name=email]", "alice@example.com")
            login.fill("input[name=password]", "alice-password-1")
            login.click("button[type=submit]")
            login.wait_for_url("**/oauth/authorize**")
            login.click("button:has-text('Allow')")
            login.wait_for_event("close", timeout=15_000)
            code_flow.get_by_text("Logout").wait_for()  # Swagger UI holds a token now
            page.click("button.btn-done")

            page.click("#operations-products-list_products")
            page.click("button.try-out__btn")
            page.click("button.execute")
            status = page.locator(".live-responses-table tbody .response-col_status").first
            status.wait_for()
            assert status.inner_text().strip() == "200"
            body = page.locator(".live-responses-table .microlight").first.inner_text()
            assert '"total"' in body
            url = page.locator(".request-url pre").first.inner_text()
            assert url.startswith(f"{gateway}/catalog/v1/products")  # via the gateway
        except Exception:
            OUTPUT.mkdir(exist_ok=True)
            for i, p in enumerate(context.pages):
                p.screenshot(path=str(OUTPUT / f"swagger-login-{i}.png"), full_page=True)
                (OUTPUT / f"swagger-login-{i}.html").write_text(p.content())
            raise
        finally:
            browser.close()
