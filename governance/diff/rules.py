"""The breaking-change rules: one id, level and reason each (docs/governance.md lists them).

Levels: ``ERR`` breaks an existing client, ``WARN`` may break one, ``INFO`` is safe.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Level(StrEnum):
    """How bad a change is for a client written against the old spec."""

    ERR = "ERR"
    WARN = "WARN"
    INFO = "INFO"


@dataclass(frozen=True)
class Rule:
    """A kind of change: its id, level and a one-line reason."""

    id: str
    level: Level
    why: str


_ERR, _WARN, _INFO = Level.ERR, Level.WARN, Level.INFO

RULES: dict[str, Rule] = {
    r.id: r
    for r in (
        # paths and operations
        Rule("path-removed", _ERR, "clients calling the path get 404"),
        Rule("operation-removed", _ERR, "clients calling the operation get 404/405"),
        Rule("operation-removed-after-sunset", _INFO,
             "deprecated with an `x-sunset` date that has passed: removal was announced"),
        Rule("path-added", _INFO, "new endpoints break nobody"),
        Rule("operation-added", _INFO, "new operations break nobody"),
        Rule("operation-deprecated", _INFO, "announces a removal; clients get notice"),
        Rule("operation-id-changed", _WARN, "generated clients name methods by operationId"),
        # security
        Rule("security-scope-added", _ERR,
             "tokens that were enough before are now refused with 403"),
        Rule("security-scheme-added", _ERR,
             "callers without the new credential are now refused with 401"),
        Rule("security-relaxed", _INFO, "fewer scopes or schemes needed"),
        # parameters
        Rule("request-parameter-added-required", _ERR, "old requests lack it and get 400"),
        Rule("request-parameter-added", _INFO, "optional: old requests stay valid"),
        Rule("request-parameter-optional-to-required", _ERR,
             "old requests that omit it get 400"),
        Rule("request-parameter-required-to-optional", _INFO, "old requests stay valid"),
        Rule("request-parameter-removed", _WARN,
             "clients still send it; it is ignored or, with strict validation, refused"),
        Rule("request-parameter-location-changed", _ERR,
             "clients send it in the old place (e.g. query instead of header)"),
        # request bodies
        Rule("request-body-added-required", _ERR, "old requests without a body get 400"),
        Rule("request-body-optional-to-required", _ERR, "old requests without a body get 400"),
        Rule("request-body-removed", _WARN, "clients still send a body the server ignores"),
        Rule("request-media-type-removed", _ERR, "clients sending that content type get 415"),
        Rule("request-media-type-added", _INFO, "one more accepted content type"),
        # request schemas (bodies and parameters)
        Rule("request-property-added-required", _ERR, "old requests lack it and get 400"),
        Rule("request-property-added", _INFO, "optional: old requests stay valid"),
        Rule("request-property-optional-to-required", _ERR,
             "old requests that omit it get 400"),
        Rule("request-property-required-to-optional", _INFO, "old requests stay valid"),
        Rule("request-property-removed", _WARN,
             "clients still send it (ERR when the object no longer allows extra properties)"),
        Rule("request-property-type-changed", _ERR, "old values no longer validate"),
        Rule("request-property-type-widened", _INFO, "integer → number accepts old values"),
        Rule("request-enum-value-removed", _ERR, "clients sending that value get 400"),
        Rule("request-enum-value-added", _INFO, "one more accepted value"),
        Rule("request-enum-added", _ERR, "a free value is now restricted to a list"),
        Rule("request-became-non-nullable", _ERR, "clients sending null get 400"),
        Rule("request-additional-properties-restricted", _ERR,
             "clients sending extra properties get 400"),
        Rule("request-constraint-tightened", _ERR,
             "maxLength/maximum/maxItems lowered, minLength/minimum/minItems raised, "
             "exclusive bound added, pattern or multipleOf added: old values may be refused"),
        Rule("request-pattern-changed", _WARN, "a different pattern may refuse old values"),
        Rule("request-constraint-loosened", _INFO, "more values accepted"),
        Rule("request-variant-removed", _ERR, "clients sending that oneOf/anyOf variant get 400"),
        Rule("request-variant-added", _INFO, "one more accepted variant"),
        Rule("request-format-changed", _WARN, "a different format may refuse old values"),
        # responses
        Rule("response-success-status-removed", _ERR,
             "clients expecting that 2xx/3xx status no longer get it"),
        Rule("response-status-removed", _INFO, "an error status is no longer documented"),
        Rule("response-success-status-added", _WARN,
             "clients may not handle a new success status"),
        Rule("response-status-added", _INFO, "a new error status is documented"),
        Rule("response-media-type-removed", _ERR,
             "clients asking for that content type get 406 or something else"),
        Rule("response-media-type-added", _INFO, "one more content type offered"),
        Rule("response-property-removed", _ERR,
             "clients reading it find it missing (a rename is a removal plus an addition)"),
        Rule("response-property-added", _INFO, "clients ignore unknown properties"),
        Rule("response-property-type-changed", _ERR, "clients parse the old type"),
        Rule("response-property-type-narrowed", _INFO,
             "number → integer: every new value is still a number"),
        Rule("response-property-became-optional", _ERR,
             "clients reading it may find it missing"),
        Rule("response-property-became-required", _INFO, "always present now"),
        Rule("response-property-became-nullable", _ERR, "clients may get null where they "
             "expect a value"),
        Rule("response-enum-value-added", _ERR,
             "clients switching over the values meet one they do not know "
             "(INFO when the schema is marked `x-extensible-enum: true`)"),
        Rule("response-enum-value-added-extensible", _INFO,
             "the enum is declared extensible: clients must accept unknown values"),
        Rule("response-enum-value-removed", _INFO, "clients never see it again"),
        Rule("response-constraint-loosened", _WARN,
             "longer/larger/more values than a client may have sized for"),
        Rule("response-constraint-tightened", _INFO, "every new value fits the old bounds"),
        Rule("constraint-made-explicit", _INFO,
             "a minLength/maxLength the old pattern, format or enum already implied"),
        Rule("response-variant-added", _WARN, "clients may not handle a new oneOf/anyOf variant"),
        Rule("response-variant-removed", _INFO, "clients never see it again"),
        Rule("response-format-changed", _WARN, "clients may parse the old format"),
        Rule("response-header-removed", _WARN, "clients reading it find it missing"),
        # versions
        Rule("version-major-not-bumped", _ERR,
             "a breaking change needs a new major version (a new `v<N>.yaml`)"),
        Rule("version-not-increased", _WARN, "the contract changed but `info.version` did not"),
    )
}
