"""Pacts checked against the provider's OpenAPI spec, without running the provider.

For every HTTP interaction of a pact (Pact specification v2–v4 JSON, as pact-python 4
writes it) the request must match an operation of ``openapi/<provider>/v<N>.yaml`` (path
after the spec's ``servers`` base path, and method), its parameters and body must be valid
for that operation, and the expected response status, headers and body must be ones the
spec declares. Values under matchers are checked as the examples the pact carries.

Schemas are validated with Connexion's own OpenAPI 3.0 validators
(``connexion.json_schema.Draft4RequestValidator``/``Draft4ResponseValidator``: JSON Schema
draft 4 plus ``nullable``/``writeOnly``), i.e. the validation the running provider applies.
On top of the schema, a response field the spec does not document is an error even where
the schema leaves ``additionalProperties`` open: a consumer must not rely on it.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from connexion.json_schema import Draft4RequestValidator, Draft4ResponseValidator
from jsonschema import Draft4Validator

from governance import openapi_model as model

#: request headers that are transport or security, not API parameters
_TRANSPORT_HEADERS = {"content-type", "content-length", "accept", "authorization", "host",
                      "user-agent", "connection", "accept-encoding"}
#: response headers every HTTP answer may carry without being documented
_RESPONSE_TRANSPORT = {"content-type", "content-length", "date", "server", "connection",
                       "transfer-encoding"}
#: a pacticipant name is a component name; it becomes a folder name under openapi/
_NAME = re.compile(r"[a-z][a-z0-9-]{0,62}")


@dataclass
class Result:
    """The verdict on one interaction."""

    pact: str
    description: str
    method: str
    path: str
    status: int | None
    operation: str | None = None
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    skipped: str | None = None

    @property
    def ok(self) -> bool:
        return not self.errors

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("pact", "description", "method", "path",
                                              "status", "operation", "errors", "warnings",
                                              "skipped")} | {"ok": self.ok}


@dataclass(frozen=True)
class _Spec:
    path: Path
    base: str
    doc: dict[str, Any]
    operations: tuple[model.Operation, ...]


@lru_cache(maxsize=32)
def _provider_specs(openapi_dir: Path, provider: str) -> tuple[_Spec, ...]:
    found = []
    for path in sorted((openapi_dir / provider).glob("v*.yaml")):
        doc = model.dereference(path)
        servers = doc.get("servers") or [{"url": f"/{path.stem}"}]
        base = urlparse(str(servers[0].get("url", ""))).path.rstrip("/")
        found.append(_Spec(path, base, doc, tuple(model.operations(doc))))
    return tuple(found)


def _template(path: str) -> tuple[re.Pattern[str], int]:
    parts = re.split(r"(\{[^}/]+\})", path)
    regex = "".join(f"(?P<{p[1:-1]}>[^/]+)" if p.startswith("{") else re.escape(p)
                    for p in parts)
    literal = sum(1 for seg in path.split("/") if seg and not seg.startswith("{"))
    return re.compile(f"^{regex}$"), literal


def _header_map(headers: Any) -> dict[str, str]:
    if not isinstance(headers, dict):
        return {}
    out = {}
    for name, value in headers.items():
        out[str(name).lower()] = ", ".join(map(str, value)) if isinstance(value, list) else \
            str(value)
    return out


def _query_map(query: Any) -> dict[str, list[str]]:
    if isinstance(query, str):
        return parse_qs(query, keep_blank_values=True)
    if isinstance(query, dict):
        return {str(k): [str(x) for x in (v if isinstance(v, list) else [v])]
                for k, v in query.items()}
    return {}


_ABSENT = object()


def _body(part: dict[str, Any], headers: dict[str, str]) -> tuple[Any, str | None]:
    """The body of a pact request/response and its content type (``_ABSENT`` if none)."""
    if "body" not in part or part["body"] is None:
        return _ABSENT, headers.get("content-type")
    body = part["body"]
    ctype = headers.get("content-type")
    if isinstance(body, dict) and "content" in body and ("contentType" in body
                                                         or "encoded" in body):  # v4
        ctype = ctype or body.get("contentType")
        content = body["content"]
        encoded = body.get("encoded")
        if isinstance(encoded, str) and encoded.lower() == "base64":
            content = base64.b64decode(content).decode("utf-8", "replace")
        if isinstance(content, str) and _media(ctype or "").endswith("json") and encoded:
            content = json.loads(content)
        return content, ctype
    return body, ctype


def _media(ctype: str) -> str:
    return ctype.split(";")[0].strip().lower()


def _pick_media(content: dict[str, Any], ctype: str | None) -> str | None:
    if not content:
        return None
    if not ctype:
        return "application/json" if "application/json" in content else next(iter(content))
    wanted = _media(ctype)
    for media in content:
        if media.lower() == wanted:
            return media
    kind = wanted.split("/")[0]
    for media in content:
        if media.lower() in (f"{kind}/*", "*/*"):
            return media
    return None


def _coerce(value: str | list[str], schema: dict[str, Any]) -> Any:
    """A parameter's text as the type its schema declares (as the provider would read it)."""
    schema = model.merge_all_of(schema)
    kind = schema.get("type")
    if kind == "array":
        values = value if isinstance(value, list) else [value]
        if len(values) == 1 and "," in values[0]:
            values = values[0].split(",")
        return [_coerce(v, schema.get("items") or {}) for v in values]
    text = value[0] if isinstance(value, list) else value
    try:
        if kind == "integer" and re.fullmatch(r"[+-]?\d+", text):
            return int(text)
        if kind == "number":
            return float(text)
    except ValueError:
        return text
    if kind == "boolean" and text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


def _schema_errors(instance: Any, schema: Any, where: str, response: bool) -> list[str]:
    if not isinstance(schema, dict):
        return []
    cls = Draft4ResponseValidator if response else Draft4RequestValidator
    validator = cls(_plain(schema, subset=response),
                    format_checker=Draft4Validator.FORMAT_CHECKER)
    out = []
    for error in sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.path))):
        path = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.path)
        out.append(f"{where} {path}: {error.message}")
    return out


def _plain(schema: Any, subset: bool) -> Any:
    """*schema* ready for validation: recursion placeholders accept anything; with *subset*
    (a response a consumer expects) ``required`` is dropped and ``oneOf`` read as ``anyOf``.

    A pact's response body lists only the fields the consumer reads (Pact ignores extra
    fields the provider sends), so it is a subset of a valid response, not a whole one.
    """
    if isinstance(schema, dict):
        if model.RECURSIVE in schema:
            return {}
        out = {}
        for key, value in schema.items():
            if subset and key == "required" and isinstance(value, list):
                continue
            out["anyOf" if subset and key == "oneOf" else key] = _plain(value, subset)
        return out
    if isinstance(schema, list):
        return [_plain(v, subset) for v in schema]
    return schema


def _valid(instance: Any, schema: Any) -> bool:
    return not _schema_errors(instance, schema, "", response=True)


def undocumented(instance: Any, schema: Any, path: str = "$") -> list[str]:
    """JSON paths of object members in *instance* that *schema* does not document.

    A member is documented when the schema (allOf merged, the matching oneOf/anyOf
    variant) names it in ``properties`` or gives ``additionalProperties`` a schema or
    ``true``; an object schema without ``properties`` is a free-form map.
    """
    schema = model.merge_all_of(schema)
    if not isinstance(schema, dict) or model.RECURSIVE in schema:
        return []
    variants = schema.get("oneOf") or schema.get("anyOf")
    if variants:
        candidates = [v for v in variants if _valid(instance, v)] or list(variants)
        return min((undocumented(instance, v, path) for v in candidates), key=len)
    if isinstance(instance, dict) and "properties" in schema:
        props, extra = schema["properties"] or {}, schema.get("additionalProperties")
        found = []
        for key, value in instance.items():
            sub = f"{path}.{key}"
            if key in props:
                found += undocumented(value, props[key], sub)
            elif isinstance(extra, dict):
                found += undocumented(value, extra, sub)
            elif extra is not True:
                found.append(sub)
        return found
    if isinstance(instance, dict) and isinstance(schema.get("additionalProperties"), dict):
        return [p for key, value in instance.items()
                for p in undocumented(value, schema["additionalProperties"], f"{path}.{key}")]
    if isinstance(instance, list) and isinstance(schema.get("items"), dict):
        return [p for i, value in enumerate(instance)
                for p in undocumented(value, schema["items"], f"{path}[{i}]")]
    return []


def _match(specs: tuple[_Spec, ...], method: str,
           raw_path: str) -> tuple[_Spec | None, model.Operation | None, dict[str, str], str]:
    """The operation a request path and method reach; else why not."""
    for spec in specs:
        if spec.base and not (raw_path == spec.base or raw_path.startswith(spec.base + "/")):
            continue
        rest = raw_path[len(spec.base):] or "/"
        hits = []
        for op in spec.operations:
            regex, literal = _template(op.path)
            found = regex.match(rest)
            if found:
                hits.append((literal, op, {k: unquote(v) for k, v in found.groupdict().items()}))
        if not hits:
            return spec, None, {}, f"path {raw_path} matches no path of {spec.path.name}"
        best = max(literal for literal, _, _ in hits)
        paths = {op.path for literal, op, _ in hits if literal == best}
        for literal, op, params in hits:
            if literal == best and op.method == method:
                return spec, op, params, ""
        allowed = sorted(op.method for literal, op, _ in hits if op.path in paths)
        return spec, None, {}, (f"{method} is not an operation of {'/'.join(sorted(paths))} "
                                f"(spec allows {', '.join(allowed)})")
    bases = ", ".join(s.base or "/" for s in specs)
    return None, None, {}, f"path {raw_path} is under no spec base path ({bases})"


def check_interaction(interaction: dict[str, Any], provider: str, openapi_dir: Path,
                      pact_name: str) -> Result:
    """Check one interaction of a pact for *provider* against its spec."""
    request = interaction.get("request") or {}
    response = interaction.get("response") or {}
    raw = str(request.get("path", ""))
    method = str(request.get("method", "GET")).upper()
    status = response.get("status")
    result = Result(pact_name, str(interaction.get("description", "")), method, raw,
                    int(status) if status is not None else None)
    kind = str(interaction.get("type", "Synchronous/HTTP"))
    if kind != "Synchronous/HTTP" or "request" not in interaction:
        result.skipped = f"not an HTTP interaction ({kind})"
        return result
    if not _NAME.fullmatch(provider):
        result.errors.append(f"provider name {provider!r} is not a component name")
        return result
    specs = _provider_specs(openapi_dir.resolve(), provider)
    if not specs:
        result.errors.append(f"no spec for provider {provider!r} "
                             f"(openapi/{provider}/v<N>.yaml)")
        return result
    path_only, _, inline_query = raw.partition("?")
    _, op, path_params, why = _match(specs, method, path_only)
    if op is None:
        result.errors.append(why)
        return result
    result.operation = f"{op.spec.get('operationId', op.label)} ({op.label})"
    headers = _header_map(request.get("headers"))
    query = _query_map(request.get("query")) or _query_map(inline_query)
    _check_parameters(result, op, path_params, query, headers)
    _check_request_body(result, op, request, headers)
    _check_response(result, op, response)
    return result


def _check_parameters(result: Result, op: model.Operation, path_params: dict[str, str],
                      query: dict[str, list[str]], headers: dict[str, str]) -> None:
    declared_query = set()
    for param in op.parameters:
        where, name = param.get("in"), str(param.get("name"))
        schema = param.get("schema") or {}
        value: str | list[str] | None
        if where == "path":
            value = path_params.get(name)
        elif where == "query":
            declared_query.add(name)
            value = query.get(name)
        elif where == "header":
            value = headers.get(name.lower())
        else:
            continue
        if value is None:
            if param.get("required") or where == "path":
                result.errors.append(f"request: required {where} parameter {name} is missing")
            continue
        result.errors += _schema_errors(_coerce(value, schema), schema,
                                        f"request {where} parameter {name}", response=False)
    for name in query:
        if name not in declared_query:
            result.errors.append(f"request: query parameter {name} is not in the spec")
    security = op.security or ()
    anonymous = not security or any(not alt for alt in security)
    if not anonymous and "authorization" not in headers:
        result.warnings.append("request: no Authorization header, the operation requires "
                               "a token (the provider answers 401)")


def _check_request_body(result: Result, op: model.Operation, request: dict[str, Any],
                        headers: dict[str, str]) -> None:
    body, ctype = _body(request, headers)
    spec_body = op.spec.get("requestBody")
    if body is _ABSENT:
        if spec_body and spec_body.get("required"):
            result.errors.append("request: the spec requires a body, the pact sends none")
        return
    if not spec_body:
        result.errors.append("request: the pact sends a body, the operation takes none")
        return
    content = spec_body.get("content") or {}
    media = _pick_media(content, ctype)
    if media is None:
        result.errors.append(f"request: content type {ctype} not accepted "
                             f"(spec: {', '.join(content)})")
        return
    result.errors += _schema_errors(body, (content[media] or {}).get("schema"),
                                    "request body", response=False)


def _check_response(result: Result, op: model.Operation, response: dict[str, Any]) -> None:
    responses = {str(k): v for k, v in (op.spec.get("responses") or {}).items()}
    status = str(result.status)
    key = next((k for k in (status, f"{status[:1]}XX", "default") if k in responses), None)
    if key is None:
        result.errors.append(f"response: status {status} is not declared "
                             f"(spec: {', '.join(responses)})")
        return
    if key == "default":
        result.warnings.append(f"response: status {status} only matches `default`")
    declared = responses[key] or {}
    headers = _header_map(response.get("headers"))
    spec_headers = {str(k).lower(): v for k, v in (declared.get("headers") or {}).items()}
    for name, value in headers.items():
        if name in _RESPONSE_TRANSPORT:
            continue
        if name not in spec_headers:
            result.errors.append(f"response: header {name} is not in the spec "
                                 f"(a consumer must not rely on it)")
            continue
        schema = (spec_headers[name] or {}).get("schema") or {}
        result.errors += _schema_errors(_coerce(value, schema), schema,
                                        f"response header {name}", response=True)
    body, ctype = _body(response, headers)
    if body is _ABSENT:
        return
    content = declared.get("content") or {}
    if not content:
        result.errors.append(f"response: the pact expects a body, the spec's {key} has none")
        return
    media = _pick_media(content, ctype)
    if media is None:
        result.errors.append(f"response: content type {ctype} not declared "
                             f"(spec: {', '.join(content)})")
        return
    schema = (content[media] or {}).get("schema")
    errors = _schema_errors(body, schema, "response body", response=True)
    result.errors += errors
    if not errors:
        result.errors += [f"response body {p}: not in the spec (a consumer must not rely on "
                          "an undocumented field)" for p in undocumented(body, schema)]


def pact_files(pacts: list[Path]) -> list[Path]:
    """The pact files named, directories expanded to their ``*.json``."""
    files: list[Path] = []
    for item in pacts:
        files += sorted(item.glob("*.json")) if item.is_dir() else [item]
    return files


def check_pact(path: Path, openapi_dir: Path) -> list[Result]:
    """Every interaction of the pact file at *path*, checked."""
    try:
        pact = json.loads(path.read_text(encoding="utf-8"))
        provider = str(pact["provider"]["name"])
        consumer = str(pact["consumer"]["name"])
        interactions = list(pact.get("interactions") or [])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return [Result(path.name, "(the pact file)", "", "", None,
                       errors=[f"not a readable pact: {exc}"])]
    if path.stem not in (f"{consumer}-{provider}", f"{consumer}-{provider}-messages"):
        return [Result(path.name, "(the pact file)", "", "", None,
                       errors=[f"file name should be {consumer}-{provider}.json (its "
                               "consumer and provider)"])]
    return [check_interaction(i, provider, openapi_dir, path.name) for i in interactions]


def check_all(pacts: list[Path], openapi_dir: Path) -> Iterator[Result]:
    """Every interaction of every pact file (see :func:`pact_files`)."""
    for path in pact_files(pacts):
        yield from check_pact(path, openapi_dir)


def format_text(results: list[Result]) -> str:
    """A readable report: one line per interaction, its errors and warnings below it."""
    lines = []
    for r in results:
        verdict = "skip" if r.skipped else ("ok" if r.ok else "FAIL")
        lines.append(f"{verdict:<4}  {r.pact}: {r.description!r} — {r.method} {r.path} → "
                     f"{r.status}" + (f"  [{r.operation}]" if r.operation else ""))
        lines += [f"        ✗ {e}" for e in r.errors]
        lines += [f"        ! {w}" for w in r.warnings]
        if r.skipped:
            lines.append(f"        {r.skipped}")
    failed = sum(1 for r in results if not r.ok)
    lines.append(f"{len(results)} interaction(s), {failed} failed")
    return "\n".join(lines)


def format_json(results: list[Result]) -> str:
    """The results as JSON (``ok`` and ``interactions``)."""
    return json.dumps({"ok": all(r.ok for r in results),
                       "interactions": [r.as_dict() for r in results]}, indent=2)
