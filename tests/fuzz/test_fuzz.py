"""Schemathesis on every spec in ``openapi/``: stateless and stateful, all checks.

``test_<api>_<version>[<METHOD> <path>]`` runs, for one operation, the examples, coverage
and fuzzing phases with positive and negative data; ``test_<api>_<version>_stateful``
follows the spec's OpenAPI ``links`` (create → get, update, delete). Every case goes to
the running platform: public operations through the gateway with a real user token,
internal ones to their service over mTLS as the calling service. A failure prints
Schemathesis' report with the curl command that reproduces it.

The specs are discovered (a new ``openapi/<api>/v<major>.yaml`` is fuzzed without a
change here); the tests are generated per spec below.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.errors import FlakyStrategyDefinition
from hypothesis.stateful import rule

from charter import specs
from tests.fuzz.support import (
    BUSINESS_REFUSALS,
    CASES,
    DEFAULT_ACCEPTED,
    HTTP_METHODS,
    STATEFUL_EXAMPLES,
    STATEFUL_RESTARTS,
    STATEFUL_STEPS,
    Harness,
    assert_auth_enforced,
    authorize_pending,
    load_schema,
    register_auth,
    spec_files,
    unreachable,
)

pytestmark = pytest.mark.e2e

SETTINGS = settings(deadline=None, database=None, derandomize=True,
                    suppress_health_check=list(HealthCheck))


def creates(doc: dict[str, Any]) -> dict[str, bool]:
    """operationId → has links, for every operation that creates a resource of a top-level
    collection (answers 201, or 202 with ``Location``, on a path without parameters): the
    starting points of the stateful run. (Sub-resources such as a refund are reached
    through their parent's links.)"""
    found = {}
    for path, item in doc.get("paths", {}).items():
        if "{" in path:
            continue
        for method in HTTP_METHODS:
            op = item.get(method)
            if op is None:
                continue
            created = [r for code, r in op.get("responses", {}).items()
                       if code == "201" or (code == "202" and "Location" in r.get("headers", {}))]
            if created:
                found[op["operationId"]] = any(r.get("links") for r in created)
    return found


@pytest.mark.parametrize(("api", "version"), spec_files(),
                         ids=[f"{a}/{v}" for a, v in spec_files()])
def test_every_create_links_to_what_uses_it(api: str, version: str) -> None:
    """The stateful run needs ``links``: a create without them would never be followed."""
    unlinked = [op for op, linked in creates(specs.load(api, version)).items() if not linked]
    assert not unlinked, f"openapi/{api}/{version}.yaml: add links to {unlinked}"


def _tests(api: str, version: str) -> tuple[Callable[..., None], Callable[..., None] | None]:
    schema = load_schema(api, version)
    register_auth(schema, api, version)

    @schema.parametrize()
    @SETTINGS
    def stateless(case: Any, fuzz_harness: Harness) -> None:
        authorize_pending(case, fuzz_harness, api, version)
        CASES[f"{api}/{version} stateless"] += 1
        kwargs = fuzz_harness.call_kwargs(api, version, case.operation.label)
        response = case.call_and_validate(**kwargs)
        assert_auth_enforced(case, response, kwargs, f"{api}/{version} {case.operation.label}")

    operator_schema = load_schema(api, version)
    register_auth(operator_schema, api, version, operator=True)

    def stateful(fuzz_harness: Harness) -> None:
        failures: list[BaseException] = []  # every check failure, recorded as it happens

        class Machine(operator_schema.as_state_machine()):  # type: ignore[misc]
            def get_call_kwargs(self, case: Any) -> dict[str, Any]:
                CASES[f"{api}/{version} stateful"] += 1
                return fuzz_harness.call_kwargs(api, version, case.operation.label)

            @rule()
            def idle(self) -> None:
                """Always applicable: when no link can be followed any more (every bundle
                used up), Hypothesis still has a step to take instead of stopping the run
                with "no progress can be made" (pytest has no scenario-ending step)."""

            def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
                try:
                    super().validate_response(response, case, **kwargs)
                    assert_auth_enforced(
                        case, response,
                        fuzz_harness.call_kwargs(api, version, case.operation.label),
                        f"{api}/{version} {case.operation.label} (operator)")
                except Exception as exc:
                    failures.append(exc)
                    raise

        # Generate only, as Schemathesis' own runner does for state machines. Against a
        # server whose state moves on, Hypothesis may find that a scenario it generated
        # before no longer unfolds the same way (FlakyStrategyDefinition: not an answer of
        # the API). Schemathesis' runner then starts again until it ran its scenarios, and
        # so do we (random, not derandomised: the server is not deterministic either) —
        # unless a check failed, which is then raised as it was recorded.
        scenarios = settings(SETTINGS, derandomize=False, max_examples=STATEFUL_EXAMPLES,
                             stateful_step_count=STATEFUL_STEPS, phases=[Phase.generate])
        for _restart in range(STATEFUL_RESTARTS):
            try:
                Machine.run(settings=scenarios)
                return
            except FlakyStrategyDefinition:
                if failures:
                    raise failures[0] from None

    stateless.__doc__ = f"Every operation of openapi/{api}/{version}.yaml, stateless."
    stateful.__doc__ = f"openapi/{api}/{version}.yaml along its links."
    # A spec that creates nothing (exchange: read-only rates) has no links to follow.
    return stateless, (stateful if creates(schema.raw_schema) else None)


for _api, _version in spec_files():
    _name = f"test_{_api}_{_version}"
    _stateless, _stateful = _tests(_api, _version)
    globals()[_name] = _stateless
    if _stateful is not None:
        globals()[f"{_name}_stateful"] = _stateful


def test_only_known_operations_are_left_out() -> None:
    """An internal operation no platform identity may call is left out of the fuzzing:
    the three superseded by events (and so deprecated), and loyalty's
    ``reverse_redemption``, declared for orders, which redeems no points yet. Any other
    would be a mistake in a spec or in the dependency manifest."""
    found = {}
    for api, version in spec_files():
        doc = specs.load(api, version)
        deprecated = {op["operationId"] for item in doc.get("paths", {}).values()
                      for method, op in item.items()
                      if method in HTTP_METHODS and op.get("deprecated")}
        for operation_id in unreachable(doc):
            found[operation_id] = (api, operation_id in deprecated)
    assert found == {"create_award": ("loyalty", True), "reverse_award": ("loyalty", True),
                     "send_notification": ("notifications", True),
                     "reverse_redemption": ("loyalty", False)}


def test_every_check_is_on() -> None:
    """No check of Schemathesis is disabled for any operation of any spec (the config in
    tests/fuzz/support.py may only widen ``positive_data_acceptance`` by a declared 402/422)."""
    from schemathesis.checks import CHECKS, load_all_checks
    from schemathesis.core.result import Ok

    load_all_checks()
    names = {check.__name__ for check in CHECKS.get_all()}
    required = {"not_a_server_error", "status_code_conformance", "content_type_conformance",
                "response_schema_conformance", "response_headers_conformance",
                "negative_data_rejection", "positive_data_acceptance", "ignored_auth",
                "use_after_free"}
    assert required <= names
    for api, version in spec_files():
        schema = load_schema(api, version)
        phases = schema.config.phases
        assert phases.examples.enabled and phases.coverage.enabled
        assert phases.fuzzing.enabled and phases.stateful.enabled
        for result in schema.get_all_operations():
            assert isinstance(result, Ok), result  # an invalid operation fails here
            operation = result.ok()
            for phase in ("examples", "coverage", "fuzzing", "stateful"):
                config = schema.config.checks_config_for(operation=operation, phase=phase)
                off = sorted(n for n in names if not config.get_by_name(name=n).enabled)
                assert not off, f"{api}/{version} {operation.label} ({phase}): {off} off"
                accepted = set(config.positive_data_acceptance.expected_statuses)
                assert accepted - DEFAULT_ACCEPTED <= set(BUSINESS_REFUSALS), accepted
