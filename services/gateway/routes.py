"""The gateway's route table, generated from the specs in ``openapi/`` at start-up.

Every ``openapi/<api>/v<major>.yaml`` contributes its operations: ``<method> <path>`` is
served by the gateway as ``/<api>/v<major><path>`` and forwarded to the API's service at
``/v<major><path>``. Path templates (``{id}``) match exactly one non-empty segment. No
route is written by hand: an operation added to a spec is routed on the next start.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from charter import config, specs

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_SPEC_FILE = re.compile(r"^v(\d+)\.yaml$")
_TEMPLATE = re.compile(r"\{[^/{}]+\}")

# Alternatives of required scope sets; ``None`` means the operation needs no token.
Security = tuple[frozenset[str], ...] | None


@dataclass(frozen=True)
class Operation:
    """One spec operation as the gateway sees it."""

    api: str
    version: str
    method: str  # upper case
    path: str  # the spec's path template, e.g. /products/{product_id}
    operation_id: str
    security: Security
    internal_callers: tuple[str, ...] = ()  # ``x-internal-callers``: service-to-service only

    def allows(self, scopes: set[str]) -> bool:
        """True when the token's scopes satisfy one of the security alternatives."""
        if self.security is None:
            return True
        return any(required <= scopes for required in self.security)

    @property
    def required_scopes(self) -> list[str]:
        """The scopes of the first alternative (for ``WWW-Authenticate``)."""
        return sorted(self.security[0]) if self.security else []


@dataclass
class ApiVersion:
    """One API version: its bundled spec and its operations, indexed for matching."""

    api: str
    version: str
    spec: dict[str, Any]
    static: dict[str, dict[str, Operation]] = field(default_factory=dict)
    templated: list[tuple[re.Pattern[str], dict[str, Operation]]] = field(default_factory=list)

    @property
    def prefix(self) -> str:
        """Where the gateway serves it: ``/<api>/v<major>``."""
        return f"/{self.api}/{self.version}"

    @property
    def operations(self) -> list[Operation]:
        """Every operation, static paths first."""
        ops = [op for methods in self.static.values() for op in methods.values()]
        ops += [op for _, methods in self.templated for op in methods.values()]
        return ops

    def find(self, rest: str) -> dict[str, Operation] | None:
        """The operations (by method) of the path ``rest`` (below the version prefix)."""
        methods = self.static.get(rest)
        if methods is not None:
            return methods
        for pattern, methods in self.templated:
            if pattern.match(rest):
                return methods
        return None


@dataclass(frozen=True)
class Match:
    """A routed request: the operation and the upstream path (``/v<major>/…``)."""

    operation: Operation
    upstream_path: str


@dataclass(frozen=True)
class NoMatch:
    """An unrouted request: 404, or 405 with the allowed methods."""

    status: int
    allow: tuple[str, ...] = ()
    api: ApiVersion | None = None


def _security(doc: dict[str, Any], op: dict[str, Any]) -> Security:
    requirements = op.get("security", doc.get("security"))
    if not requirements:
        return None
    alternatives: list[frozenset[str]] = []
    for requirement in requirements:
        if not requirement:  # {} = anonymous access is one alternative
            return None
        scopes: set[str] = set()
        for names in requirement.values():
            scopes.update(names or ())
        alternatives.append(frozenset(scopes))
    return tuple(alternatives)


def _pattern(template: str) -> re.Pattern[str]:
    parts = _TEMPLATE.split(template)
    return re.compile("^" + "[^/]+".join(re.escape(p) for p in parts) + "$")


def build_api(api: str, version: str, doc: dict[str, Any]) -> ApiVersion:
    """Index the operations of one bundled spec."""
    entry = ApiVersion(api=api, version=version, spec=doc)
    templated: list[tuple[int, int, re.Pattern[str], dict[str, Operation]]] = []
    for path, item in (doc.get("paths") or {}).items():
        methods: dict[str, Operation] = {}
        for method in HTTP_METHODS:
            op = item.get(method)
            if not isinstance(op, dict):
                continue
            methods[method.upper()] = Operation(
                api=api,
                version=version,
                method=method.upper(),
                path=path,
                operation_id=str(op.get("operationId") or f"{method}_{path}"),
                security=_security(doc, op),
                internal_callers=tuple(op.get("x-internal-callers") or ()),
            )
        if not methods:
            continue
        params = len(_TEMPLATE.findall(path))
        if params == 0:
            entry.static[path] = methods
        else:
            literal = len(_TEMPLATE.sub("", path))
            templated.append((params, -literal, _pattern(path), methods))
    # Concrete paths win over templated ones (OpenAPI rule); fewer parameters first.
    templated.sort(key=lambda t: (t[0], t[1]))
    entry.templated = [(pattern, methods) for _, _, pattern, methods in templated]
    return entry


def discover(spec_dir: Path | None = None) -> list[tuple[str, str]]:
    """Every ``(api, "v<major>")`` with a spec file under ``spec_dir``, sorted."""
    root = spec_dir or config.OPENAPI_DIR
    found: list[tuple[int, str, str]] = []
    for folder in sorted(p for p in root.iterdir()
                         if p.is_dir() and p.name != "common" and not p.name.startswith(".")):
        for file in folder.iterdir():
            m = _SPEC_FILE.match(file.name)
            if m:
                found.append((int(m.group(1)), folder.name, f"v{m.group(1)}"))
    return [(api, version) for _, api, version in sorted(found, key=lambda t: (t[1], t[0]))]


class RouteTable:
    """All routed operations, looked up by ``(api, version)`` then path then method."""

    def __init__(self, apis: list[ApiVersion]) -> None:
        self.apis = apis
        self._by_prefix: dict[tuple[str, str], ApiVersion] = {
            (a.api, a.version): a for a in apis
        }

    @classmethod
    def from_specs(cls, spec_dir: Path | None = None) -> RouteTable:
        """Load and bundle every spec under ``spec_dir`` (default ``openapi/``)."""
        return cls([
            build_api(api, version, specs.load(api, version, spec_dir))
            for api, version in discover(spec_dir)
        ])

    def __len__(self) -> int:
        return sum(len(a.operations) for a in self.apis)

    def api(self, api: str, version: str) -> ApiVersion | None:
        """The API version served under ``/<api>/<version>``."""
        return self._by_prefix.get((api, version))

    def match(self, method: str, path: str) -> Match | NoMatch:
        """Route ``method path`` (raw path, without the query string)."""
        parts = path.split("/", 3)  # ['', api, version, rest]
        if len(parts) < 4:
            return NoMatch(404)
        entry = self._by_prefix.get((parts[1], parts[2]))
        if entry is None:
            return NoMatch(404)
        rest = "/" + parts[3]
        if "/./" in rest + "/" or "/../" in rest + "/" or "//" in rest:
            return NoMatch(404, api=entry)
        methods = entry.find(rest)
        if methods is None:
            return NoMatch(404, api=entry)
        operation = methods.get(method)
        if operation is None:
            return NoMatch(405, tuple(methods), api=entry)
        return Match(operation, f"/{entry.version}{rest}")
