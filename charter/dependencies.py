"""The dependency manifest (``governance/dependencies.yaml``): who calls which operation.

The one declaration of the platform's service-to-service calls. Each component lists the
operations of other APIs it calls with its **own** identity (``calls``: its OAuth client
and mTLS certificate) and those it calls **on a user's behalf** with the user's token
(``on_behalf_of_user``); the gateway is marked ``proxy``. Everything else is derived:

- :meth:`Manifest.client_scopes`: the scopes of a service's OAuth client, from the
  ``security`` requirement of each operation it ``calls`` (auth's seed registers the
  client with them, the service's token provider asks for exactly them);
- :meth:`Manifest.clients`: which services have a client at all (those with ``calls``);
- later: contract tests, the Backstage catalog and network policies.

:func:`check` validates the manifest against the specs (every entry names an existing
operation; internal operations are called only by services on their allow-list and never
on a user's behalf). ``tests/test_dependency_manifest.py`` checks it against the requests
the HTTP adapters really send. See docs/architecture.md, "Dependency manifest".
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from charter import config

MANIFEST_PATH = config.ROOT / "governance" / "dependencies.yaml"
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
INTERNAL_CALLERS = "x-internal-callers"


class ManifestError(ValueError):
    """The manifest is malformed or disagrees with the specs."""


class Call(BaseModel):
    """One operation of another API: ``{api, operationId, version}``."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    api: str = Field(min_length=1)
    operation_id: str = Field(alias="operationId", min_length=1)
    version: str = Field(default="v1", pattern=r"^v[0-9]+$")

    def __str__(self) -> str:
        return f"{self.api} {self.version} {self.operation_id}"


class ServiceDependencies(BaseModel):
    """What one component calls."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    calls: tuple[Call, ...] = ()
    on_behalf_of_user: tuple[Call, ...] = ()
    proxy: bool = False


class Operation(BaseModel):
    """An operation as the spec declares it (what the manifest needs of it)."""

    model_config = ConfigDict(frozen=True)

    api: str
    version: str
    operation_id: str
    method: str
    path: str
    scopes: frozenset[str]
    internal_callers: frozenset[str] | None = None


class Manifest(BaseModel):
    """The whole manifest: component name → its dependencies."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    services: dict[str, ServiceDependencies]

    def service(self, name: str) -> ServiceDependencies:
        """The entry of ``name`` (``ManifestError`` for a component not in the manifest)."""
        try:
            return self.services[name]
        except KeyError:
            raise ManifestError(f"{name!r} is not in the dependency manifest") from None

    def clients(self) -> tuple[str, ...]:
        """The services that call other APIs with their own identity (one OAuth client each)."""
        return tuple(sorted(name for name, deps in self.services.items() if deps.calls))

    def client_scopes(self, name: str) -> tuple[str, ...]:
        """The exact scopes of ``name``'s OAuth client, derived from its ``calls``."""
        needed: set[str] = set()
        for call in self.service(name).calls:
            needed |= operation(call).scopes
        return tuple(sorted(needed))

    def client_scope(self, name: str) -> str:
        """:meth:`client_scopes` as an OAuth ``scope`` string."""
        return " ".join(self.client_scopes(name))

    def entries(self) -> Iterator[tuple[str, str, Call]]:
        """``(service, "calls" | "on_behalf_of_user", call)`` for every entry."""
        for name, deps in self.services.items():
            for call in deps.calls:
                yield name, "calls", call
            for call in deps.on_behalf_of_user:
                yield name, "on_behalf_of_user", call


def parse(document: Any) -> Manifest:
    """A :class:`Manifest` from the parsed YAML (``ManifestError`` when malformed)."""
    try:
        return Manifest.model_validate(document)
    except ValidationError as exc:
        raise ManifestError(f"governance/dependencies.yaml is malformed: {exc}") from exc


@functools.lru_cache(maxsize=4)
def load(path: Path = MANIFEST_PATH) -> Manifest:
    """The manifest at ``path`` (cached), validated against the specs (see :func:`check`)."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ManifestError(f"cannot read the dependency manifest {path}: {exc}") from exc
    manifest = parse(document)
    errors = check(manifest)
    if errors:
        raise ManifestError("; ".join(errors))
    return manifest


# -- the specs' side ---------------------------------------------------------------------


@functools.lru_cache(maxsize=32)
def spec_operations(api: str, version: str = "v1",
                    spec_dir: Path | None = None) -> Mapping[str, Operation]:
    """operationId → :class:`Operation` of ``openapi/<api>/<version>.yaml`` (cached).

    ``ManifestError`` when the spec does not exist or an operation's security requirement
    offers alternatives (the scopes a caller needs would be ambiguous).
    """
    path = (spec_dir or config.OPENAPI_DIR) / api / f"{version}.yaml"
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError:
        raise ManifestError(f"no spec {api} {version} (openapi/{api}/{version}.yaml)") from None
    default_security = doc.get("security") or []
    found: dict[str, Operation] = {}
    for route, item in (doc.get("paths") or {}).items():
        for method, op in (item or {}).items():
            if method not in HTTP_METHODS or not isinstance(op, Mapping):
                continue
            op_id = op.get("operationId")
            if not op_id:
                continue
            security = op.get("security", default_security) or []
            if len(security) > 1:
                raise ManifestError(f"{api} {version} {op_id}: several security alternatives; "
                                    "the scopes a service needs would be ambiguous")
            scopes = frozenset(s for req in security for names in req.values() for s in names)
            callers = op.get(INTERNAL_CALLERS)
            found[str(op_id)] = Operation(
                api=api, version=version, operation_id=str(op_id), method=method.upper(),
                path=str(route), scopes=scopes,
                internal_callers=frozenset(callers) if callers is not None else None,
            )
    return found


def operation(call: Call) -> Operation:
    """The spec's operation a manifest entry names (``ManifestError`` when there is none)."""
    ops = spec_operations(call.api, call.version)
    try:
        return ops[call.operation_id]
    except KeyError:
        raise ManifestError(f"{call}: no such operationId in openapi/{call.api}/"
                            f"{call.version}.yaml") from None


def check(manifest: Manifest) -> list[str]:
    """Every disagreement between ``manifest`` and the specs, as sentences (empty: fine)."""
    errors: list[str] = []
    known = set(config.PORTS) - {"auth"}
    for name, deps in manifest.services.items():
        if name not in known:
            errors.append(f"{name}: not a platform component ({', '.join(sorted(known))})")
        own = set(deps.calls)
        for kind, calls in (("calls", deps.calls), ("on_behalf_of_user", deps.on_behalf_of_user)):
            if len(set(calls)) != len(calls):
                errors.append(f"{name}: duplicate entries under {kind}")
        both = own & set(deps.on_behalf_of_user)
        if both:
            errors.append(f"{name}: {', '.join(map(str, sorted(both, key=str)))} declared both "
                          "as its own call and on a user's behalf")
    for name, kind, call in manifest.entries():
        if call.api == name:
            errors.append(f"{name}: calls its own API ({call})")
        try:
            op = operation(call)
        except ManifestError as exc:
            errors.append(f"{name}: {exc}")
            continue
        if op.internal_callers is None:
            continue
        if kind == "on_behalf_of_user":
            errors.append(f"{name}: {call} is internal ({INTERNAL_CALLERS}) and cannot be "
                          "called with a user's token")
        elif name not in op.internal_callers:
            errors.append(f"{name}: {call} is internal and {name} is not in its "
                          f"{INTERNAL_CALLERS} {sorted(op.internal_callers)}")
    return errors
