"""The developer portal: the API list at ``/``, each API's Swagger UI and ``openapi.json``.

Swagger UI's static files come from the ``swagger_ui_bundle`` package (installed with
``connexion[swagger-ui]``). Each API version gets ``/<api>/v<major>/ui/`` configured to
load ``/<api>/v<major>/openapi.json`` — the bundled spec with ``servers`` pointing at the
gateway, so *Try it out* goes through the gateway — and to log in with the
authorization-code flow + PKCE as the public client ``swagger-ui``.

The index renders each spec's ``info.description`` as CommonMark (markdown-it-py, raw
HTML off: a ``<tag>`` in a description shows as text; ``javascript:`` links are dropped)
and shows the API's owner, lifecycle, SLOs and dashboard link (:mod:`.api_facts`).
"""

from __future__ import annotations

import copy
import html
import json
import mimetypes
from pathlib import Path
from typing import Any

from markdown_it import MarkdownIt

from charter import deprecation, specs

from . import api_facts
from .routes import ApiVersion, RouteTable

try:  # the bundle ships with connexion[swagger-ui]
    import swagger_ui_bundle

    SWAGGER_UI_DIR: Path | None = Path(swagger_ui_bundle.swagger_ui_path)
except ImportError:  # pragma: no cover - a dependency of the project
    SWAGGER_UI_DIR = None

REDIRECT_PAGE = "oauth2-redirect.html"
# CommonMark + tables; "html": False escapes raw HTML instead of passing it through.
_MARKDOWN = MarkdownIt("commonmark", {"html": False}).enable("table")


def render_markdown(text: str) -> tuple[str, str]:
    """A description as HTML: its first paragraph, and the rest (``""`` when none)."""
    first, _, rest = text.strip().partition("\n\n")
    return _MARKDOWN.render(first), _MARKDOWN.render(rest) if rest.strip() else ""


def _slo_table(slos: list[api_facts.Slo]) -> str:
    if not slos:
        return ""
    esc = html.escape
    rows = "".join(
        f"<tr><td title=\"{esc(s.description)}\">{esc(s.name)}</td>"
        f"<td>{s.availability_pct:g} %</td><td>{s.latency_p99_ms:g} ms</td></tr>"
        for s in slos)
    return ("<table class=\"slo\"><tr><th>SLO (operation class)</th><th>availability</th>"
            f"<th>p99 latency</th></tr>{rows}</table>")


def _json_for_script(value: Any) -> str:
    """JSON safe to embed inside ``<script>`` (no ``</script>`` or ``<!--`` breakout)."""
    return (json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("&", "\\u0026"))


def _retiring(api: str, version: str) -> str:
    """The deprecation and sunset dates and successor of a deprecated version, as HTML."""
    found = deprecation.load().find(api, version)
    if found is None:
        return ""
    successor = f"/{found.successor.api}/{found.successor.version}/ui/"
    return (f" <span class=\"sunset\">deprecated since {found.deprecated_at.date()}, "
            f"sunset {found.sunset_at.date()}; successor "
            f"<a href=\"{html.escape(successor)}\">{html.escape(found.successor.version)}</a>"
            "</span>")


def gateway_spec(entry: ApiVersion) -> dict[str, Any]:
    """The bundled spec as the gateway serves it: ``servers`` = the gateway prefix."""
    doc = copy.deepcopy(entry.spec)
    doc["servers"] = [{"url": entry.prefix,
                       "description": "Through the Charter gateway"}]
    return doc


class Portal:
    """Pre-rendered portal page, specs as JSON and Swagger UI files (read once, cached)."""

    def __init__(self, routes: RouteTable, client_id: str = "swagger-ui",
                 ui_dir: Path | None = SWAGGER_UI_DIR, dashboard_url: str | None = None,
                 ) -> None:
        self.routes = routes
        self.client_id = client_id
        self.dashboard_url = dashboard_url
        self.ui_dir = ui_dir
        self._files: dict[str, tuple[bytes, str]] = {}
        self._allowed = (
            {p.name for p in ui_dir.iterdir() if p.is_file() and p.suffix != ".j2"}
            if ui_dir and ui_dir.is_dir() else set()
        )
        self._index = self._render_index()
        self._specs = {
            (e.api, e.version): json.dumps(gateway_spec(e)).encode() for e in routes.apis
        }

    # --- the API list -------------------------------------------------------------
    def index(self) -> bytes:
        """The portal page listing every API version."""
        return self._index

    def _render_index(self) -> bytes:
        rows: list[str] = []
        entities = api_facts.load_entities()
        for e in self.routes.apis:
            info = e.spec.get("info", {})
            first, rest = render_markdown(str(info.get("description", "")))
            if rest:
                first += f"<details><summary>More</summary>{rest}</details>"
            entity = entities.get(f"{e.api}-{e.version}")
            owner = entity.owner if entity else str(info.get("x-owner", "unknown"))
            lifecycle = entity.lifecycle if entity else str(info.get("x-lifecycle", "unknown"))
            dashboard = api_facts.dashboard_link(self.dashboard_url, e.api)
            esc = html.escape
            rows.append(
                "<section class=\"api\">"
                f"<h2>{esc(str(info.get('title', e.api)))} "
                f"<small>{esc(e.version)} · {esc(str(info.get('version', '')))}</small></h2>"
                "<p class=\"meta\">"
                f"<span>api: <code>{esc(e.api)}</code></span> "
                f"<span class=\"owner\">owner: {esc(owner)}</span> "
                f"<span class=\"lifecycle\">lifecycle: {esc(lifecycle)}</span> "
                f"<span>operations: {len(e.operations)}</span>{_retiring(e.api, e.version)}</p>"
                f"<div class=\"description\">{first}</div>"
                f"{_slo_table(api_facts.slos(e.api, e.operations))}"
                f"<p><a href=\"{esc(e.prefix)}/ui/\">Swagger UI</a> · "
                f"<a href=\"{esc(e.prefix)}/openapi.json\">OpenAPI JSON</a> · "
                + (f"<a class=\"dashboard\" href=\"{esc(dashboard)}\">Dashboard</a> · "
                   if dashboard else "")
                + f"base URL <code>{esc(e.prefix)}</code></p>"
                "</section>"
            )
        page = (
            "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<title>Charter API portal</title>"
            "<style>body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;"
            "padding:0 1rem;color:#222}section.api{border:1px solid #ddd;border-radius:6px;"
            "padding:.5rem 1rem;margin:1rem 0}h2 small{color:#666;font-weight:normal}"
            ".meta span{margin-right:1rem;color:#555}code{background:#f3f3f3;padding:0 .2rem}"
            "table.slo{border-collapse:collapse;margin:.5rem 0}table.slo td,table.slo th"
            "{padding:.1rem .6rem;text-align:left;border-bottom:1px solid #ddd}</style>"
            "</head><body>"
            "<h1>Charter API portal</h1>"
            f"<p>{len(self.routes.apis)} APIs, all served through this gateway at "
            "<code>/&lt;api&gt;/v&lt;major&gt;/…</code>. Call them with "
            "<code>Authorization: Bearer &lt;token&gt;</code>; log in from each API's "
            "Swagger UI with <em>Authorize</em>. Errors are problem+json; their "
            "<code>type</code> links to the <a href=\"/problems/\">problem types</a>.</p>"
            + "".join(rows)
            + "</body></html>"
        )
        return page.encode()

    # --- per API ------------------------------------------------------------------
    def spec_json(self, api: str, version: str) -> bytes | None:
        """``openapi.json`` of one API version (``servers`` rewritten), or ``None``."""
        return self._specs.get((api, version))

    def ui_page(self, entry: ApiVersion, origin: str) -> bytes:
        """Swagger UI's ``index.html`` for one API version.

        ``origin`` is the gateway's public origin (``scheme://host[:port]``), used for the
        OAuth2 redirect URL registered at the authorization server.
        """
        config = {
            "url": f"{entry.prefix}/openapi.json",
            "oauth2RedirectUrl": f"{origin}{entry.prefix}/ui/{REDIRECT_PAGE}",
            "initOAuth": {
                "clientId": self.client_id,
                "usePkceWithAuthorizationCodeGrant": True,
                "scopes": " ".join(specs.scopes(entry.spec)),
            },
        }
        title = html.escape(str(entry.spec.get("info", {}).get("title", entry.api)))
        return (
            "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{title} — Swagger UI</title>"
            "<link rel=\"stylesheet\" type=\"text/css\" href=\"./swagger-ui.css\">"
            "<link rel=\"icon\" type=\"image/png\" href=\"./favicon-32x32.png\" sizes=\"32x32\">"
            "<style>html{box-sizing:border-box;overflow-y:scroll}*,*:before,*:after"
            "{box-sizing:inherit}body{margin:0;background:#fafafa}</style></head><body>"
            "<div id=\"swagger-ui\"></div>"
            "<script src=\"./swagger-ui-bundle.js\" charset=\"UTF-8\"></script>"
            "<script src=\"./swagger-ui-standalone-preset.js\" charset=\"UTF-8\"></script>"
            "<script>window.onload = function () {"
            f"var config = {_json_for_script(config)};"
            "var ui = SwaggerUIBundle({url: config.url, oauth2RedirectUrl: "
            "config.oauth2RedirectUrl, dom_id: '#swagger-ui', deepLinking: true, "
            "validatorUrl: null, presets: [SwaggerUIBundle.presets.apis, "
            "SwaggerUIStandalonePreset], plugins: [SwaggerUIBundle.plugins.DownloadUrl], "
            "layout: 'StandaloneLayout'});"
            "ui.initOAuth(config.initOAuth); window.ui = ui; };</script>"
            "</body></html>"
        ).encode()

    def ui_file(self, name: str) -> tuple[bytes, str] | None:
        """A static Swagger UI file by bare name, with its content type, or ``None``."""
        if name not in self._allowed or self.ui_dir is None:
            return None
        cached = self._files.get(name)
        if cached is None:
            content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
            if content_type.startswith("text/") or content_type.endswith("javascript"):
                content_type += "; charset=utf-8"
            cached = ((self.ui_dir / name).read_bytes(), content_type)
            self._files[name] = cached
        return cached
