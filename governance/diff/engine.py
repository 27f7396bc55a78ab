"""Compare two OpenAPI 3.0 documents and list every change a client would notice.

Both documents are fully dereferenced first (:mod:`governance.openapi_model`), so a change
in a shared file such as ``openapi/common/problem.yaml`` shows at every operation it
reaches. Request and response schemas are compared in opposite directions: what makes a
request schema stricter breaks senders, what makes a response schema looser breaks
readers. Rule ids and levels live in :mod:`governance.diff.rules`.

Hand-written rather than delegated because no OpenAPI diff tool is installable from the
project's registries (oasdiff is a Go binary, openapi-diff a Java one) and the house rules
(``x-sunset``, ``x-extensible-enum``) are Charter's own.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any

from governance import openapi_model as model
from governance.diff.rules import RULES, Level

_UPPER = ("maxLength", "maximum", "maxItems", "maxProperties")
_LOWER = ("minLength", "minimum", "minItems", "minProperties")
_FLAGS = ("exclusiveMaximum", "exclusiveMinimum", "uniqueItems")


@dataclass(frozen=True)
class Finding:
    """One change: which rule, how bad, where and what."""

    rule: str
    level: Level
    location: str
    message: str

    def as_dict(self) -> dict[str, str]:
        data = asdict(self)
        data["level"] = self.level.value
        return data


def _status_is_success(status: str) -> bool:
    return status[:1] in ("2", "3")


def _sunset_passed(value: Any, today: date) -> bool:
    if isinstance(value, datetime):
        return value.date() <= today
    if isinstance(value, date):
        return value <= today
    try:
        return date.fromisoformat(str(value)[:10]) <= today
    except ValueError:
        pass
    try:  # an HTTP-date, as in the Sunset header (RFC 8594)
        return parsedate_to_datetime(str(value)).date() <= today
    except (TypeError, ValueError):
        return False


#: string lengths a format fixes (RFC 4122 UUID text, RFC 3339 full-date)
_FORMAT_LENGTH = {"uuid": (36, 36), "date": (10, 10)}


def _implied_length(schema: dict[str, Any]) -> tuple[int, int] | None:
    """The (min, max) string length an enum, a fixed-length format or an anchored pattern
    already imposes, so that stating it as minLength/maxLength is not a tightening."""
    if schema.get("enum") and all(isinstance(v, str) for v in schema["enum"]):
        lengths = [len(v) for v in schema["enum"]]
        return min(lengths), max(lengths)
    if schema.get("format") in _FORMAT_LENGTH:
        return _FORMAT_LENGTH[schema["format"]]
    pattern = schema.get("pattern")
    if isinstance(pattern, str) and pattern.startswith("^") and pattern.endswith("$") \
            and not pattern.endswith("\\$"):
        try:
            low, high = sre_parse.parse(pattern).getwidth()
        except (re.error, OverflowError, RecursionError):
            return None
        if high < 2**31:  # bounded: every match is at most this long
            return int(low), int(high)
    return None


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _at(loc: str, field: str) -> str:
    return f"{loc}: {field}" if field else loc


class _Differ:
    def __init__(self, today: date) -> None:
        self.today = today
        self.findings: list[Finding] = []

    def add(self, rule: str, loc: str, message: str, level: Level | None = None) -> None:
        self.findings.append(Finding(rule, level or RULES[rule].level, loc, message))

    # --- documents and operations --------------------------------------------------

    def documents(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        old_ops = {(model.path_key(op.path), op.method): op for op in model.operations(old)}
        new_ops = {(model.path_key(op.path), op.method): op for op in model.operations(new)}
        old_paths = {key for key, _ in old_ops}
        new_paths = {key for key, _ in new_ops}
        for key, op in old_ops.items():
            if key in new_ops:
                self.operation(op, new_ops[key])
                continue
            # x-sunset on the operation, else on its path item
            sunset = op.spec.get("x-sunset") or ((old.get("paths") or {}).get(op.path)
                                                 or {}).get("x-sunset")
            deprecated = bool(op.spec.get("deprecated"))
            if deprecated and sunset and _sunset_passed(sunset, self.today):
                self.add("operation-removed-after-sunset", op.label,
                         f"removed after its sunset ({sunset})")
                continue
            note = (" (it was not deprecated)" if not deprecated else
                    f" before its sunset ({sunset})" if sunset else " (deprecated, no x-sunset)")
            if key[0] not in new_paths:
                self.add("path-removed", op.label, "path removed" + note)
            else:
                self.add("operation-removed", op.label, "operation removed" + note)
        for key, op in new_ops.items():
            if key not in old_ops:
                rule = "path-added" if key[0] not in old_paths else "operation-added"
                self.add(rule, op.label, "new " + rule.split("-")[0])

    def operation(self, old: model.Operation, new: model.Operation) -> None:
        loc = new.label
        if old.spec.get("operationId") != new.spec.get("operationId"):
            self.add("operation-id-changed", loc, f"operationId {old.spec.get('operationId')!r}"
                     f" → {new.spec.get('operationId')!r}")
        if new.spec.get("deprecated") and not old.spec.get("deprecated"):
            sunset = new.spec.get("x-sunset")
            self.add("operation-deprecated", loc,
                     "deprecated" + (f", sunset {sunset}" if sunset else ""))
        self.security(loc, old.security, new.security)
        self.parameters(loc, old, new)
        self.request_body(loc, old.spec.get("requestBody"), new.spec.get("requestBody"))
        self.responses(loc, old.spec.get("responses") or {}, new.spec.get("responses") or {})

    # --- security --------------------------------------------------------------------

    def security(self, loc: str, old: tuple[dict[str, list[str]], ...] | None,
                 new: tuple[dict[str, list[str]], ...] | None) -> None:
        old_alts = [dict(a) for a in (old or ({},))] or [{}]
        new_alts = [dict(a) for a in (new or ({},))] or [{}]

        def enough(have: dict[str, list[str]], need: dict[str, list[str]]) -> bool:
            return all(s in have and set(scopes) <= set(have[s]) for s, scopes in need.items())

        broke = False
        for alt in old_alts:
            if any(enough(alt, need) for need in new_alts):
                continue
            broke = True
            need = new_alts[0]
            missing_schemes = sorted(set(need) - set(alt))
            if missing_schemes:
                self.add("security-scheme-added", loc,
                         f"now requires {', '.join(missing_schemes)} (was "
                         f"{_describe_security(alt)})")
            else:
                added = sorted({sc for s, scopes in need.items() for sc in scopes}
                               - {sc for scopes in alt.values() for sc in scopes})
                self.add("security-scope-added", loc,
                         f"scope(s) {', '.join(added)} now required (was "
                         f"{_describe_security(alt)})")
        if not broke and _key(old_alts) != _key(new_alts):
            self.add("security-relaxed", loc, f"security {_describe_security_list(old_alts)} "
                     f"→ {_describe_security_list(new_alts)}")

    # --- parameters and bodies -------------------------------------------------------

    def parameters(self, loc: str, old: model.Operation, new: model.Operation) -> None:
        def keyed(op: model.Operation) -> dict[tuple[str, str], dict[str, Any]]:
            names = [seg[1:-1] for seg in op.path.split("/") if seg.startswith("{")]
            out: dict[tuple[str, str], dict[str, Any]] = {}
            for p in op.parameters:
                where, name = str(p.get("in")), str(p.get("name"))
                if where == "path" and name in names:
                    name = f"#{names.index(name)}"  # a path parameter is its position
                elif where == "header":
                    name = name.lower()
                out[(where, name)] = p
            return out

        before, after = keyed(old), keyed(new)
        moved: set[tuple[str, str]] = set()
        for key, param in before.items():
            label = f"{loc} {key[0]} parameter {param.get('name')}"
            if key in after:
                self.parameter(label, param, after[key])
                continue
            elsewhere = [k for k in after if k[1] == key[1] and k not in before]
            if elsewhere:
                moved.add(elsewhere[0])
                self.add("request-parameter-location-changed", label,
                         f"moved from {key[0]} to {elsewhere[0][0]}")
            else:
                self.add("request-parameter-removed", label, "parameter removed")
        for key, param in after.items():
            if key in before or key in moved:
                continue
            label = f"{loc} {key[0]} parameter {param.get('name')}"
            if param.get("required"):
                self.add("request-parameter-added-required", label, "new required parameter")
            else:
                self.add("request-parameter-added", label, "new optional parameter")

    def parameter(self, label: str, old: dict[str, Any], new: dict[str, Any]) -> None:
        if new.get("required") and not old.get("required"):
            self.add("request-parameter-optional-to-required", label, "now required")
        elif old.get("required") and not new.get("required"):
            self.add("request-parameter-required-to-optional", label, "now optional")
        self.schema("request", label, "", old.get("schema") or {}, new.get("schema") or {})

    def request_body(self, loc: str, old: dict[str, Any] | None,
                     new: dict[str, Any] | None) -> None:
        label = f"{loc} request body"
        if old is None and new is None:
            return
        if old is None:
            assert new is not None
            if new.get("required"):
                self.add("request-body-added-required", label, "a body is now required")
            return
        if new is None:
            self.add("request-body-removed", label, "the body is no longer documented")
            return
        if new.get("required") and not old.get("required"):
            self.add("request-body-optional-to-required", label, "the body is now required")
        old_content, new_content = old.get("content") or {}, new.get("content") or {}
        for media, item in old_content.items():
            if media not in new_content:
                self.add("request-media-type-removed", f"{label} {media}",
                         f"{media} no longer accepted")
                continue
            self.schema("request", f"{label} {media}", "", item.get("schema") or {},
                        new_content[media].get("schema") or {})
        for media in new_content:
            if media not in old_content:
                self.add("request-media-type-added", f"{label} {media}", f"{media} accepted")

    def responses(self, loc: str, old: dict[Any, Any], new: dict[Any, Any]) -> None:
        old = {str(k): v for k, v in old.items()}
        new = {str(k): v for k, v in new.items()}
        for status, response in old.items():
            label = f"{loc} response {status}"
            if status not in new:
                if _status_is_success(status):
                    self.add("response-success-status-removed", label, f"{status} removed")
                else:
                    self.add("response-status-removed", label, f"{status} removed")
                continue
            self.response(label, response or {}, new[status] or {})
        for status in new:
            if status not in old:
                rule = ("response-success-status-added" if _status_is_success(status)
                        else "response-status-added")
                self.add(rule, f"{loc} response {status}", f"{status} added")

    def response(self, label: str, old: dict[str, Any], new: dict[str, Any]) -> None:
        old_content, new_content = old.get("content") or {}, new.get("content") or {}
        for media, item in old_content.items():
            if media not in new_content:
                self.add("response-media-type-removed", f"{label} {media}",
                         f"{media} no longer returned")
                continue
            self.schema("response", f"{label} {media}", "", item.get("schema") or {},
                        new_content[media].get("schema") or {})
        for media in new_content:
            if media not in old_content:
                self.add("response-media-type-added", f"{label} {media}", f"{media} offered")
        new_headers = {str(h).lower() for h in (new.get("headers") or {})}
        for header in old.get("headers") or {}:
            if str(header).lower() not in new_headers:
                self.add("response-header-removed", f"{label} header {header}",
                         "header no longer documented")

    # --- schemas ---------------------------------------------------------------------

    def schema(self, ctx: str, loc: str, field: str, old: Any, new: Any) -> None:
        old, new = model.merge_all_of(old), model.merge_all_of(new)
        if not isinstance(old, dict) or not isinstance(new, dict) or old == new:
            return
        if model.RECURSIVE in old or model.RECURSIVE in new:
            return  # a recursive schema is compared where it is first expanded
        where = _at(loc, field)
        if not self.types(ctx, where, old.get("type"), new.get("type")):
            return
        self.nullable(ctx, where, bool(old.get("nullable")), bool(new.get("nullable")))
        self.enum(ctx, where, old, new)
        if old.get("format") != new.get("format") and old.get("format") is not None:
            self.add(f"{ctx}-format-changed", where,
                     f"format {old.get('format')!r} → {new.get('format')!r}")
        self.constraints(ctx, where, old, new)
        self.properties(ctx, loc, field, old, new)
        old_extra, new_extra = old.get("additionalProperties"), new.get("additionalProperties")
        if ctx == "request" and new_extra is False and old_extra is not False:
            self.add("request-additional-properties-restricted", where,
                     "extra properties are now refused")
        if isinstance(old_extra, dict) and isinstance(new_extra, dict):
            self.schema(ctx, loc, f"{field}.*", old_extra, new_extra)
        if "items" in old or "items" in new:
            self.schema(ctx, loc, f"{field}[]", old.get("items") or {}, new.get("items") or {})
        for keyword in ("oneOf", "anyOf"):
            self.variants(ctx, loc, field, keyword, old.get(keyword), new.get(keyword))

    def types(self, ctx: str, where: str, old: Any, new: Any) -> bool:
        """Report a type change; False when the schemas are no longer comparable."""
        if old == new:
            return True
        if ctx == "request":
            if new is None or (old, new) == ("integer", "number"):
                self.add("request-property-type-widened", where, f"type {old} → {new or 'any'}")
                return True
            self.add("request-property-type-changed", where, f"type {old or 'any'} → {new}")
            return False
        if old is None or (old, new) == ("number", "integer"):
            self.add("response-property-type-narrowed", where, f"type {old or 'any'} → {new}")
            return True
        self.add("response-property-type-changed", where, f"type {old} → {new or 'any'}")
        return False

    def nullable(self, ctx: str, where: str, old: bool, new: bool) -> None:
        if ctx == "response" and new and not old:
            self.add("response-property-became-nullable", where, "may now be null")
        elif ctx == "request" and old and not new:
            self.add("request-became-non-nullable", where, "null no longer accepted")

    def enum(self, ctx: str, where: str, old: dict[str, Any], new: dict[str, Any]) -> None:
        if "enum" not in old and "enum" not in new:
            return
        if "enum" not in new:
            rule = "request-constraint-loosened" if ctx == "request" else \
                "response-constraint-loosened"
            self.add(rule, where, "enum removed: any value allowed")
            return
        if "enum" not in old:
            if ctx == "request":
                self.add("request-enum-added", where, f"now restricted to {new['enum']}")
            else:
                self.add("response-constraint-tightened", where, f"now one of {new['enum']}")
            return
        before = {_key(v): v for v in old["enum"]}
        after = {_key(v): v for v in new["enum"]}
        added = [after[k] for k in after if k not in before]
        removed = [before[k] for k in before if k not in after]
        if ctx == "request":
            for value in removed:
                self.add("request-enum-value-removed", where, f"value {value!r} removed")
            for value in added:
                self.add("request-enum-value-added", where, f"value {value!r} added")
            return
        extensible = bool(new.get("x-extensible-enum"))
        for value in added:
            rule = ("response-enum-value-added-extensible" if extensible
                    else "response-enum-value-added")
            self.add(rule, where, f"value {value!r} added")
        for value in removed:
            self.add("response-enum-value-removed", where, f"value {value!r} removed")

    def constraints(self, ctx: str, where: str, old: dict[str, Any],
                    new: dict[str, Any]) -> None:
        changes: list[tuple[bool, str]] = []  # (tightened?, description)
        implied = _implied_length(old)
        for key in _UPPER + _LOWER:
            a, b = old.get(key), new.get(key)
            if a == b:
                continue
            upper = key in _UPPER
            if a is None and b is not None and implied and key in ("minLength", "maxLength") and (
                    b >= implied[1] if upper else b <= implied[0]):
                self.add("constraint-made-explicit", where,
                         f"{key} {b} stated; the old pattern/format/enum already implied it")
                continue
            if a is None:
                tighter = True
            elif b is None:
                tighter = False
            else:
                tighter = b < a if upper else b > a
            changes.append((tighter, f"{key} {a if a is not None else 'none'} → "
                                     f"{b if b is not None else 'none'}"))
        for key in _FLAGS:
            a, b = bool(old.get(key)), bool(new.get(key))
            if a != b:
                changes.append((b, f"{key} {a} → {b}"))
        a, b = old.get("multipleOf"), new.get("multipleOf")
        if a != b:
            changes.append((b is not None, f"multipleOf {a} → {b}"))
        a, b = old.get("pattern"), new.get("pattern")
        if a != b:
            if a is not None and b is not None:
                rule = "request-pattern-changed" if ctx == "request" else \
                    "response-constraint-loosened"
                self.add(rule, where, f"pattern {a!r} → {b!r}")
            else:
                changes.append((b is not None, f"pattern {a!r} → {b!r}"))
        for tighter, text in changes:
            if ctx == "request":
                rule = "request-constraint-tightened" if tighter else "request-constraint-loosened"
            else:
                rule = ("response-constraint-tightened" if tighter
                        else "response-constraint-loosened")
            self.add(rule, where, text)

    def properties(self, ctx: str, loc: str, field: str, old: dict[str, Any],
                   new: dict[str, Any]) -> None:
        hidden = "readOnly" if ctx == "request" else "writeOnly"

        def visible(schema: dict[str, Any]) -> dict[str, Any]:
            props = schema.get("properties") or {}
            return {name: p for name, p in props.items()
                    if not (isinstance(p, dict) and p.get(hidden))}

        before, after = visible(old), visible(new)
        old_req, new_req = set(old.get("required") or []), set(new.get("required") or [])
        added = [name for name in after if name not in before]
        for name, prop in before.items():
            sub = f"{field}.{name}" if field else name
            where = _at(loc, sub)
            if name not in after:
                if ctx == "response":
                    twins = [n for n in added if _key(after[n]) == _key(prop)]
                    hint = f" (renamed to {twins[0]!r}?)" if len(twins) == 1 else ""
                    self.add("response-property-removed", where, "property removed" + hint)
                elif new.get("additionalProperties") is False:
                    self.add("request-property-removed", where,
                             "property removed and extra properties are refused", Level.ERR)
                else:
                    self.add("request-property-removed", where, "property removed")
                continue
            was, now = name in old_req, name in new_req
            if ctx == "request" and now and not was:
                self.add("request-property-optional-to-required", where, "now required")
            elif ctx == "request" and was and not now:
                self.add("request-property-required-to-optional", where, "now optional")
            elif ctx == "response" and was and not now:
                self.add("response-property-became-optional", where, "may now be missing")
            elif ctx == "response" and now and not was:
                self.add("response-property-became-required", where, "always present now")
            self.schema(ctx, loc, sub, prop, after[name])
        for name in added:
            where = _at(loc, f"{field}.{name}" if field else name)
            if ctx == "request" and name in new_req:
                self.add("request-property-added-required", where, "new required property")
            else:
                self.add(f"{ctx}-property-added", where, "new optional property"
                         if name not in new_req else "new property")

    def variants(self, ctx: str, loc: str, field: str, keyword: str, old: Any,
                 new: Any) -> None:
        if not old and not new:
            return
        before, after = list(old or []), list(new or [])
        unmatched_old = [v for v in before if v not in after]
        unmatched_new = [v for v in after if v not in before]
        for index, (a, b) in enumerate(zip(unmatched_old, unmatched_new, strict=False)):
            self.schema(ctx, loc, f"{field}<{keyword}:{index}>", a, b)
        where = _at(loc, field)
        for _ in unmatched_old[len(unmatched_new):]:
            self.add(f"{ctx}-variant-removed", where, f"a {keyword} variant was removed")
        for _ in unmatched_new[len(unmatched_old):]:
            self.add(f"{ctx}-variant-added", where, f"a {keyword} variant was added")

    # --- version ---------------------------------------------------------------------

    def version(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        old_v = (old.get("info") or {}).get("version")
        new_v = (new.get("info") or {}).get("version")
        breaking = any(f.level is Level.ERR for f in self.findings)
        if breaking and model.major_version(old_v) == model.major_version(new_v):
            self.add("version-major-not-bumped", "info.version",
                     f"breaking changes but the major version stays ({old_v} → {new_v})")
        elif self.findings and old_v == new_v:
            self.add("version-not-increased", "info.version", f"still {new_v}")


def _describe_security(alt: dict[str, list[str]]) -> str:
    if not alt:
        return "no authentication"
    return " + ".join(f"{s}[{' '.join(scopes)}]" if scopes else s for s, scopes in alt.items())


def _describe_security_list(alts: list[dict[str, list[str]]]) -> str:
    return " or ".join(_describe_security(a) for a in alts)


def compare(old: dict[str, Any], new: dict[str, Any], today: date | None = None) -> list[Finding]:
    """Every change from the dereferenced document *old* to *new*."""
    differ = _Differ(today or datetime.now(UTC).date())
    differ.documents(old, new)
    differ.version(old, new)
    return differ.findings


def compare_files(old: Path, new: Path, today: date | None = None) -> list[Finding]:
    """Every change from the spec file *old* to the spec file *new*."""
    return compare(model.dereference(old), model.dereference(new), today)


def has_breaking(findings: list[Finding]) -> bool:
    """True when any finding is an ``ERR``."""
    return any(f.level is Level.ERR for f in findings)


def format_text(findings: list[Finding]) -> str:
    """One line per finding (errors first), then a count per level."""
    order = {Level.ERR: 0, Level.WARN: 1, Level.INFO: 2}
    lines = [f"{f.level.value:<4} {f.rule:<40} {f.location} — {f.message}"
             for f in sorted(findings, key=lambda f: order[f.level])]
    counts = {lvl: sum(1 for f in findings if f.level is lvl) for lvl in Level}
    lines.append(", ".join(f"{counts[lvl]} {lvl.value}" for lvl in Level)
                 + (" — breaking" if counts[Level.ERR] else " — no breaking change"))
    return "\n".join(lines)


def format_json(findings: list[Finding]) -> str:
    """The findings as a JSON document (``findings`` and ``breaking``)."""
    return json.dumps({"breaking": has_breaking(findings),
                       "findings": [f.as_dict() for f in findings]}, indent=2)
