"""The portal renders spec descriptions as Markdown (raw HTML escaped) and shows, per API,
owner and lifecycle (catalog/), SLOs (governance/slas.yaml) and its dashboard link."""

from __future__ import annotations

import html
import re
from collections.abc import Callable

import httpx
import pytest

from governance.sla import model as sla
from services.gateway import api_facts
from services.gateway.app import Gateway
from services.gateway.portal import render_markdown
from services.gateway.routes import RouteTable
from services.gateway.settings import GatewaySettings

pytestmark = pytest.mark.anyio
GRAFANA = "https://grafana.example/"


def _sections(page: str) -> dict[str, str]:
    """Each API version's section of the portal page, by its prefix."""
    found = {}
    for section in re.findall(r'<section class="api">.*?</section>', page, re.S):
        prefix = re.search(r'href="(/[a-z]+/v[0-9]+)/openapi.json"', section)
        assert prefix is not None
        found[prefix.group(1)] = section
    return found


@pytest.fixture
async def page(make_gateway: Callable[..., Gateway]) -> str:
    gateway = make_gateway(GatewaySettings(rate_limit=0, dashboard_url=GRAFANA))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(gateway),
                                 base_url="http://gw") as http:
        r = await http.get("/")
    assert r.status_code == 200
    return r.text


async def test_backticks_and_emphasis_render_as_html(page: str) -> None:
    catalog = _sections(page)["/catalog/v1"]
    assert "<code>catalog:read</code>" in catalog
    assert "`" not in re.sub(r"<[^>]+>", "", catalog)  # no raw Markdown left
    orders_v1 = _sections(page)["/orders/v1"]
    assert "<strong>Deprecated since" in orders_v1
    assert "<details><summary>More</summary>" in orders_v1  # the rest of a long text


def test_raw_html_and_script_links_in_a_description_are_neutralised() -> None:
    first, rest = render_markdown(
        "Hi <script>alert(1)</script> `x<y` [a](javascript:alert(1)) [b](https://ok.example)"
        "\n\n<img src=x onerror=alert(1)>")
    assert "<script" not in first and "&lt;script&gt;" in first
    assert "<code>x&lt;y</code>" in first
    assert "javascript:" not in first.replace("[a](javascript:alert(1))", "")
    assert 'href="javascript' not in first and '<a href="https://ok.example">b</a>' in first
    assert "<img" not in rest and "&lt;img" in rest


async def test_owner_and_lifecycle_come_from_the_catalog(page: str,
                                                         routes: RouteTable) -> None:
    entities = api_facts.load_entities()
    sections = _sections(page)
    assert set(sections) == {e.prefix for e in routes.apis}
    for entry in routes.apis:
        entity = entities[f"{entry.api}-{entry.version}"]
        section = sections[entry.prefix]
        assert f'<span class="owner">owner: {html.escape(entity.owner)}</span>' in section
        assert f'<span class="lifecycle">lifecycle: {entity.lifecycle}</span>' in section
    assert "lifecycle: deprecated" in sections["/orders/v1"]
    assert "lifecycle: production" in sections["/orders/v2"]


async def test_slos_agree_with_the_governance_model(page: str, routes: RouteTable) -> None:
    objectives = {(o.service, o.slo_class): o for o in sla.objectives(sla.load())}
    sections = _sections(page)
    for entry in routes.apis:
        shown = api_facts.slos(entry.api, entry.operations)
        assert shown, entry.prefix
        for slo in shown:
            objective = objectives[(entry.api, slo.name)]
            assert (slo.availability_pct, slo.latency_p99_ms) == (
                objective.availability_pct, objective.latency_p99_ms)
            row = (f"{html.escape(slo.name)}</td><td>{slo.availability_pct:g} %</td>"
                   f"<td>{slo.latency_p99_ms:g} ms</td>")
            assert row in sections[entry.prefix], (entry.prefix, row)
    # catalog's own read objective overrides the default (99.95 %, 50 ms)
    assert "read</td><td>99.95 %</td><td>50 ms</td>" in sections["/catalog/v1"]
    assert ">checkout</td>" in sections["/orders/v2"]
    assert ">checkout</td>" not in sections["/exchange/v1"]


async def test_each_api_links_its_dashboard(page: str, routes: RouteTable,
                                            client: httpx.AsyncClient) -> None:
    sections = _sections(page)
    for entry in routes.apis:
        link = (f'<a class="dashboard" href="https://grafana.example/d/charter-overview'
                f'?var-service={entry.api}">Dashboard</a>')
        assert link in sections[entry.prefix]
    unconfigured = (await client.get("/")).text  # GATEWAY_DASHBOARD_URL unset: no link
    assert 'class="dashboard"' not in unconfigured


def test_dashboard_url_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHARTER_ENV", "development")
    monkeypatch.setenv("GATEWAY_DASHBOARD_URL", "http://127.0.0.1:3000/")
    assert GatewaySettings.from_env().dashboard_url == "http://127.0.0.1:3000"
    assert api_facts.dashboard_link("http://127.0.0.1:3000", "cart") == \
        "http://127.0.0.1:3000/d/charter-overview?var-service=cart"
    assert api_facts.dashboard_link(None, "cart") is None
