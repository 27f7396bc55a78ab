"""The portal's problem-type pages: ``/problems/`` (index) and ``/problems/<slug>``.

Every problem+json body's ``type`` is ``<public URL>/problems/<slug>``; these pages are
what such a URI resolves to. They are rendered once from the registry
(:mod:`charter.problem_types`) — no page is written by hand — served without a token and
cacheable (the registry only changes with a deployment).
"""

from __future__ import annotations

import html

from charter.problem_types import PATH, TYPES, ProblemType

CACHE_CONTROL = b"public, max-age=3600"
_STYLE = ("body{font-family:system-ui,sans-serif;max-width:52rem;margin:2rem auto;"
          "padding:0 1rem;line-height:1.5}code{background:#f3f3f3;padding:0 .2rem}"
          "table{border-collapse:collapse}td,th{padding:.2rem .6rem;text-align:left;"
          "border-bottom:1px solid #ddd}")


def _page(title: str, body: str) -> bytes:
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)} — Charter</title><style>{_STYLE}</style></head>"
            f"<body>{body}</body></html>").encode()


def _inline(text: str) -> str:
    """Escape ``text``; Markdown-style `code` spans become <code>."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def render_index() -> bytes:
    """The list of every problem type."""
    rows = "".join(
        f"<tr><td><a href=\"{PATH}{t.slug}\"><code>{t.slug}</code></a></td>"
        f"<td>{t.status}</td><td>{html.escape(t.title)}</td></tr>"
        for t in TYPES.values())
    return _page("Problem types", (
        "<p><a href=\"/\">Charter APIs</a></p><h1>Problem types</h1>"
        "<p>Every error is an RFC 9457 <code>application/problem+json</code> document; "
        "its <code>type</code> links to one of these pages. Decide on the type, not on "
        "the title.</p><table><tr><th>type</th><th>status</th><th>title</th></tr>"
        f"{rows}</table>"))


def render_type(t: ProblemType) -> bytes:
    """The page of one problem type."""
    return _page(t.title, (
        f"<p><a href=\"{PATH}\">All problem types</a></p>"
        f"<h1><code>{t.slug}</code></h1>"
        f"<p><strong>{t.status} {html.escape(t.title)}</strong></p>"
        f"<p>{_inline(t.description)}</p>"
        f"<h2>What to do</h2><p>{_inline(t.action)}</p>"
        f"<p>Answered by: {html.escape(', '.join(t.answered_by))}.</p>"))


class ProblemPages:
    """The pages, rendered once."""

    def __init__(self) -> None:
        self.index = render_index()
        self.pages = {slug: render_type(t) for slug, t in TYPES.items()}

    def get(self, path: str) -> bytes | None:
        """The page for a request path under ``/problems`` (``None``: no such type)."""
        slug = path[len(PATH):] if path.startswith(PATH) else ""
        if path in ("/problems", PATH):
            return self.index
        return self.pages.get(slug.rstrip("/"))
