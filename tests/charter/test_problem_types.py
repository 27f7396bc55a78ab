"""The problem-type registry: every raised kind registered, every registered kind
documented, and the ``type`` URIs built from the public URL (fail closed in production)."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from charter import config, problem_types, problems
from charter.problem_types import TYPES, slug_of

ROOT = config.ROOT
RUNTIME = [ROOT / "charter", ROOT / "services", ROOT / "auth"]
DOC = ROOT / "docs" / "problems.md"
COMPONENTS = {*problem_types.SERVICES, "gateway", "auth"}
PROBLEM_CLASSES = {"Problem", "BadRequest", "Forbidden", "NotFound", "Conflict",
                   "Unprocessable", "ServiceUnavailable", "UpstreamUnavailable", "BadGateway"}
SLUG = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


def _sources() -> Iterator[tuple[Path, ast.Module]]:
    for base in RUNTIME:
        for path in sorted(base.rglob("*.py")):
            if "migrations" in path.parts or path.name == "problem_types.py":
                continue
            yield path, ast.parse(path.read_text(), str(path))


def _component(path: Path) -> str | None:
    rel = path.relative_to(ROOT).parts
    if rel[0] == "auth":
        return "auth"
    if rel[0] == "services" and rel[1] in COMPONENTS:
        return rel[1]
    return None


def _called_name(call: ast.Call) -> str | None:
    func = call.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _kinds_in_code() -> list[tuple[str, str, Path, int]]:
    """``(slug, how, file, line)`` for every ``kind="…"`` keyword and ``kind = "…"``
    class attribute in the runtime code."""
    found: list[tuple[str, str, Path, int]] = []
    for path, tree in _sources():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                for kw in node.keywords:
                    if kw.arg == "kind" and isinstance(kw.value, ast.Constant) and \
                            isinstance(kw.value.value, str):
                        found.append((kw.value.value, "keyword", path, node.lineno))
            elif isinstance(node, ast.ClassDef):
                for stmt in node.body:
                    if not isinstance(stmt, ast.Assign):
                        continue
                    value = stmt.value
                    if any(isinstance(t, ast.Name) and t.id == "kind" for t in stmt.targets) \
                            and isinstance(value, ast.Constant) and isinstance(value.value, str):
                        found.append((value.value, "class", path, stmt.lineno))
    return found


# -- the registry itself --------------------------------------------------------------
@pytest.mark.parametrize("slug", sorted(TYPES))
def test_every_kind_is_complete(slug: str) -> None:
    t = TYPES[slug]
    assert SLUG.match(t.slug) and t.slug == slug
    assert 400 <= t.status <= 599
    assert t.title and t.description.endswith(".") and t.action.endswith(".")
    assert t.answered_by and set(t.answered_by) <= COMPONENTS, t.answered_by


def test_generic_kinds_exist_for_every_status_the_framework_answers() -> None:
    for status in (400, 401, 403, 404, 405, 406, 409, 410, 413, 415, 422, 429, 500, 501,
                   502, 503, 504):
        assert problem_types.for_status(status).status == status
    assert problem_types.for_status(418).slug == "validation-error"
    assert problem_types.for_status(599).slug == "internal-error"


# -- raised kinds are registered; registered kinds are raised and documented -------------
def test_every_raised_kind_is_registered_and_mapped_to_its_service() -> None:
    kinds = _kinds_in_code()
    assert len(kinds) > 30  # the scan sees the raise sites
    unknown = [f"{p.relative_to(ROOT)}:{n} {slug}" for slug, _, p, n in kinds
               if slug not in TYPES]
    assert not unknown, f"register these in charter/problem_types.py: {unknown}"
    unmapped = [f"{p.relative_to(ROOT)}:{n} {slug} (add {comp!r} to answered_by)"
                for slug, _, p, n in kinds
                if (comp := _component(p)) and slug in TYPES
                and comp not in TYPES[slug].answered_by]
    assert not unmapped, unmapped


def test_raise_sites_name_a_kind_not_a_title() -> None:
    """``title=`` at a raise site would make a type-less problem (the registry owns
    titles); ``about:blank`` must not come back."""
    offenders: list[str] = []
    for path, tree in _sources():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and _called_name(node) in PROBLEM_CLASSES and \
                    any(kw.arg == "title" for kw in node.keywords):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
            if isinstance(node, ast.Constant) and node.value == "about:blank":
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} about:blank")
    assert not offenders, offenders


def test_every_registered_kind_is_answered_somewhere() -> None:
    used = {slug for slug, *_ in _kinds_in_code()} | set(problem_types._BY_STATUS.values())
    for _path, tree in _sources():
        used |= {n.value for n in ast.walk(tree)
                 if isinstance(n, ast.Constant) and isinstance(n.value, str)
                 and n.value in TYPES}
    assert set(TYPES) - used == set(), "registered but never answered"


def test_docs_problems_md_is_rendered_from_the_registry() -> None:
    expected = problem_types.render_markdown()
    assert DOC.is_file() and DOC.read_text() == expected, (
        "docs/problems.md is stale: run  .venv/bin/python -m charter.problem_types > "
        "docs/problems.md")
    for slug in TYPES:
        assert f"\n## {slug}\n" in expected


# -- the Problem exception ------------------------------------------------------------
def test_a_kind_gives_type_title_and_status() -> None:
    body = problems.Conflict("only 1 left", kind="insufficient-points", balance=1).body()
    assert body == {"type": problem_types.uri("insufficient-points"),
                    "title": "Insufficient points", "status": 422, "detail": "only 1 left",
                    "balance": 1}
    assert problems.NotFound("gone").body()["type"].endswith("/problems/not-found")
    assert problems.Problem(status=409).kind == "conflict"
    assert problems.UpstreamUnavailable().kind == "upstream-unavailable"
    assert problems.body(404)["title"] == "Not Found"
    assert problems.body(409, kind="reservation-exists")["type"].endswith(
        "/problems/reservation-exists")


def test_an_unregistered_kind_fails_loudly() -> None:
    with pytest.raises(problem_types.UnknownProblemType, match="not-a-kind"):
        problems.Conflict("x", kind="not-a-kind")


def test_5xx_bodies_still_hide_the_detail() -> None:
    body = problems.BadGateway("provider said: secret", kind="payment-provider-error").body()
    assert body["detail"] == problems.GENERIC_5XX_DETAIL
    assert body["type"].endswith("/problems/payment-provider-error")


# -- the public base URL ----------------------------------------------------------------
def test_type_uris_use_the_public_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHARTER_PUBLIC_URL", "https://api.shop.example/")
    assert problems.type_uri("empty-cart") == "https://api.shop.example/problems/empty-cart"


def test_development_defaults_to_the_local_gateway(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHARTER_PUBLIC_URL", raising=False)
    monkeypatch.setenv("GATEWAY_PORT", "18080")
    monkeypatch.delenv("GATEWAY_URL", raising=False)
    assert problems.type_uri("not-found") == "http://127.0.0.1:18080/problems/not-found"


def test_production_requires_an_https_public_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHARTER_ENV", "production")
    monkeypatch.setenv("AUTH_ISSUER", "https://auth.example.test")
    monkeypatch.delenv("CHARTER_PUBLIC_URL", raising=False)
    found = config.settings().problems()
    assert any(p.startswith("CHARTER_PUBLIC_URL must be set") for p in found), found
    with pytest.raises(config.ConfigError, match="CHARTER_PUBLIC_URL"):
        problem_types.base_url()
    # a process that ran anyway never names a development host: a relative reference
    assert problems.type_uri("conflict") == "/problems/conflict"
    monkeypatch.setenv("CHARTER_PUBLIC_URL", "http://api.example.test")
    assert any("must be an https:// URL" in p for p in config.settings().problems())
    monkeypatch.setenv("CHARTER_PUBLIC_URL", "https://api.example.test")
    assert not [p for p in config.settings().problems() if "CHARTER_PUBLIC_URL" in p]


# -- what clients compare ---------------------------------------------------------------
@pytest.mark.parametrize("value, slug", [
    ({"type": "https://a.example/problems/insufficient-stock"}, "insufficient-stock"),
    ({"type": "http://127.0.0.1:8080/problems/not-found", "title": "x"}, "not-found"),
    ("/problems/request-in-progress", "request-in-progress"),
    ({"type": "https://a.example/problems/no-such-kind"}, None),
    ({"type": "about:blank", "title": "Insufficient stock"}, None),
    ({"title": "Reservation exists"}, None),
    ({"type": 7}, None),
    (None, None),
])
def test_slug_of_reads_the_type_only(value: object, slug: str | None) -> None:
    assert slug_of(value) == slug  # type: ignore[arg-type]
