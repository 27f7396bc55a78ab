"""One way to load an OpenAPI 3.0 document for the governance tools.

``$ref`` resolution goes through the ``referencing`` library (the one ``jsonschema``
uses): every document is a resource in a registry keyed by its ``file://`` URI, so a
reference is resolved relative to the file it appears in — ``#/…`` inside
``openapi/common/problem.yaml`` points into that file, not into the spec that included
it. Only local files are retrieved (no network), so a spec cannot make a check fetch
anything.

Two views are offered:

* :func:`dereference` — every ``$ref`` replaced by its target (what the breaking-change
  check and the pact-vs-spec check walk); a reference back into a schema that is being
  expanded (a recursive schema) becomes ``{"x-recursive-ref": <uri>}``.
* :func:`bundle` — a self-contained copy that is still readable (the published
  baselines): components of other files (``openapi/common/…#/components/<kind>/<name>``)
  are copied into the document's own ``components`` and referenced locally, any other
  reference to another file is inlined, references inside the document are kept.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urldefrag, urljoin, urlparse
from urllib.request import url2pathname

import yaml
from referencing import Registry, Resource
from referencing.exceptions import NoSuchResource, Unresolvable

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
RECURSIVE = "x-recursive-ref"


class SpecError(Exception):
    """The document cannot be loaded or one of its references cannot be resolved."""


@lru_cache(maxsize=128)
def _read_yaml(path: Path, mtime_ns: int) -> Any:
    with path.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def read_yaml(path: Path) -> Any:
    """The parsed YAML (or JSON) file, cached until the file changes."""
    try:
        return _read_yaml(path, path.stat().st_mtime_ns)
    except (OSError, yaml.YAMLError) as exc:
        raise SpecError(f"cannot read {path}: {exc}") from exc


def _retrieve(uri: str) -> Resource[Any]:
    parsed = urlparse(uri)
    if parsed.scheme != "file":
        # secure by default: a spec may only point at files next to it
        raise NoSuchResource(ref=uri)  # type: ignore[call-arg]
    return Resource.opaque(read_yaml(Path(url2pathname(parsed.path))))


def _registry() -> Registry[Any]:
    return Registry(retrieve=_retrieve)  # type: ignore[call-arg]


def file_uri(path: Path) -> str:
    """The ``file://`` URI of *path* (absolute)."""
    return path.resolve().as_uri()


@dataclass
class _Walk:
    """State of one dereferencing pass: the registry and the refs being expanded."""

    registry: Registry[Any] = field(default_factory=_registry)
    expanding: list[str] = field(default_factory=list)
    keep_local_to: str | None = None  # bundle mode: refs into this document stay
    own_components: dict[str, Any] = field(default_factory=dict)
    copied: dict[str, tuple[str, str]] = field(default_factory=dict)  # uri → (kind, name)
    added: dict[str, dict[str, Any]] = field(default_factory=dict)  # kind → name → copy

    def lookup(self, base: str, ref: str) -> tuple[Any, str, str]:
        """The target of *ref* seen from *base*: (contents, its document URI, full URI)."""
        full = urljoin(base, ref)
        if urlparse(full).scheme != "file":
            raise SpecError(f"cannot resolve $ref {ref!r} (from {base}): only local files "
                            "may be referenced")
        try:
            resolved = self.registry.resolver(base_uri=base).lookup(full)
        except (Unresolvable, NoSuchResource, SpecError) as exc:
            raise SpecError(f"cannot resolve $ref {ref!r} (from {base}): {exc}") from exc
        return resolved.contents, urldefrag(full).url, full

    def expand(self, node: Any, base: str) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                return self._follow(ref, base)
            return {key: self.expand(value, base) for key, value in node.items()}
        if isinstance(node, list):
            return [self.expand(value, base) for value in node]
        return node

    def _follow(self, ref: str, base: str) -> Any:
        full = urljoin(base, ref)
        document, fragment = urldefrag(full)
        if self.keep_local_to is not None:
            if document == self.keep_local_to:
                return {"$ref": "#" + fragment}
            component = re.fullmatch(r"/components/([^/]+)/([^/]+)", fragment)
            if component:
                return self._copy(full, component.group(1), component.group(2), base, ref)
        if full in self.expanding:
            if self.keep_local_to is not None:
                raise SpecError(f"recursive reference across files: {full}")
            return {RECURSIVE: full}
        target, target_base, full = self.lookup(base, ref)
        self.expanding.append(full)
        try:
            return self.expand(target, target_base)
        finally:
            self.expanding.pop()

    def _copy(self, full: str, kind: str, name: str, base: str, ref: str) -> dict[str, str]:
        """Bundle mode: copy a component of another file into the document's components
        (renamed ``<name>_<file>`` if the name is taken) and point at the copy."""
        if full not in self.copied:
            taken = set(self.own_components.get(kind) or {}) | set(self.added.get(kind, {}))
            stem = Path(urlparse(full).path).stem
            chosen, n = name, 1
            while chosen in taken:
                chosen = f"{name}_{stem}" + (str(n) if n > 1 else "")
                n += 1
            self.copied[full] = (kind, chosen)
            self.added.setdefault(kind, {})[chosen] = None
            target, target_base, _ = self.lookup(base, ref)
            self.added[kind][chosen] = self.expand(target, target_base)
        kind, chosen = self.copied[full]
        return {"$ref": f"#/components/{kind}/{chosen}"}


def load(path: Path) -> dict[str, Any]:
    """The document at *path* as written (references not resolved)."""
    doc = read_yaml(path)
    if not isinstance(doc, dict):
        raise SpecError(f"{path}: not an OpenAPI document")
    return copy.deepcopy(doc)


def dereference(path: Path) -> dict[str, Any]:
    """The document at *path* with every ``$ref`` (local or to another file) replaced."""
    doc = load(path)
    result: dict[str, Any] = _Walk().expand(doc, file_uri(path))
    return result


def bundle(path: Path) -> dict[str, Any]:
    """The document at *path* made self-contained: references to other files inlined,
    references inside the document kept as they are."""
    doc = load(path)
    uri = file_uri(path)
    walk = _Walk(keep_local_to=uri, own_components=doc.get("components") or {})
    result: dict[str, Any] = walk.expand(doc, uri)
    components = result.setdefault("components", {})
    for kind, copies in walk.added.items():
        components.setdefault(kind, {}).update(copies)
    return result


# --- views over a dereferenced document -------------------------------------------------


@dataclass(frozen=True)
class Operation:
    """One operation of a dereferenced spec, with path-level parameters merged in."""

    path: str
    method: str  # upper case
    spec: dict[str, Any]
    parameters: tuple[dict[str, Any], ...]
    security: tuple[dict[str, list[str]], ...] | None  # None: no requirement at all

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}"


def operations(doc: dict[str, Any]) -> Iterator[Operation]:
    """Every operation of a dereferenced document, in document order."""
    global_security = doc.get("security")
    for path, item in (doc.get("paths") or {}).items():
        if not isinstance(item, dict):
            continue
        shared = {(p.get("name"), p.get("in")): p for p in item.get("parameters") or []}
        for method in HTTP_METHODS:
            op = item.get(method)
            if not isinstance(op, dict):
                continue
            params = dict(shared)
            params.update({(p.get("name"), p.get("in")): p for p in op.get("parameters") or []})
            security = op.get("security", global_security)
            yield Operation(
                path=path,
                method=method.upper(),
                spec=op,
                parameters=tuple(params.values()),
                security=None if security is None else tuple(security),
            )


def path_key(path: str) -> str:
    """The path with parameter names erased: ``/a/{id}`` and ``/a/{x}`` are one endpoint."""
    return re.sub(r"\{[^}/]+\}", "{}", path)


def merge_all_of(schema: Any) -> Any:
    """*schema* with ``allOf`` folded into one schema (properties merged, ``required``
    united, the stricter bound kept); nested schemas are left to the caller."""
    if not isinstance(schema, dict) or "allOf" not in schema:
        return schema
    merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
    for part in schema["allOf"]:
        part = merge_all_of(part)
        if not isinstance(part, dict):
            continue
        for key, value in part.items():
            if key == "properties":
                merged.setdefault("properties", {})
                merged["properties"] = {**merged["properties"], **value}
            elif key == "required":
                merged["required"] = sorted(set(merged.get("required", [])) | set(value))
            elif key in ("maxLength", "maximum", "maxItems", "maxProperties") and key in merged:
                merged[key] = min(merged[key], value)
            elif key in ("minLength", "minimum", "minItems", "minProperties") and key in merged:
                merged[key] = max(merged[key], value)
            elif key == "nullable":
                merged[key] = bool(merged.get(key, True)) and bool(value)
            else:
                merged.setdefault(key, value)
    return merged


def major_version(version: Any) -> int | None:
    """The major number of a semantic version string (``"1.4.0"`` → 1), if it has one."""
    match = re.match(r"\s*v?(\d+)", str(version or ""))
    return int(match.group(1)) if match else None
