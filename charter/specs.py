"""Loading OpenAPI documents from ``openapi/``: YAML, external ``$ref`` bundling, runtime URLs.

Specs share components through ``$ref: '../common/x.yaml#/…'``. Connexion, Swagger UI and
the test tools all get one self-contained document: external references are inlined
(recursively, relative to the file they appear in); local ``#/…`` references stay.
The OAuth2 flow URLs are rewritten to the configured authorization server.
"""

from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from charter import config


@lru_cache(maxsize=64)
def _load_file(path: Path) -> Any:
    with path.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _pointer(doc: Any, fragment: str) -> Any:
    node = doc
    for part in [p for p in fragment.lstrip("/").split("/") if p]:
        part = part.replace("~1", "/").replace("~0", "~")
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def _inline(node: Any, current: Path, is_root: bool) -> Any:
    """Inline external refs; local refs stay only in the root document."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and not (is_root and ref.startswith("#")):
            file_part, _, fragment = ref.partition("#")
            target = (current.parent / file_part).resolve() if file_part else current
            resolved = _pointer(_load_file(target), fragment)
            return _inline(copy.deepcopy(resolved), target, is_root=False)
        return {k: _inline(v, current, is_root) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline(v, current, is_root) for v in node]
    return node


def load(api: str, version: str = "v1", spec_dir: Path | None = None) -> dict[str, Any]:
    """The bundled spec of ``openapi/<api>/<version>.yaml`` with runtime auth URLs."""
    path = ((spec_dir or config.OPENAPI_DIR) / api / f"{version}.yaml").resolve()
    doc: dict[str, Any] = _inline(copy.deepcopy(_load_file(path)), path, is_root=True)
    _apply_auth_urls(doc)
    return doc


def _apply_auth_urls(doc: dict[str, Any]) -> None:
    public = (config.env("AUTH_PUBLIC_URL") or config.auth_settings().issuer).rstrip("/")
    schemes = doc.get("components", {}).get("securitySchemes", {})
    for scheme in schemes.values():
        for flow in scheme.get("flows", {}).values():
            if "authorizationUrl" in flow:
                flow["authorizationUrl"] = f"{public}/oauth/authorize"
            if "tokenUrl" in flow:
                flow["tokenUrl"] = f"{public}/oauth/token"
            if "refreshUrl" in flow:
                flow["refreshUrl"] = f"{public}/oauth/token"


def scopes(doc: dict[str, Any]) -> list[str]:
    """Every scope any operation of the spec requires."""
    found: set[str] = set()
    for item in doc.get("paths", {}).values():
        for op in item.values():
            if isinstance(op, dict):
                for req in op.get("security", doc.get("security", [])):
                    for names in req.values():
                        found.update(names)
    return sorted(found)
