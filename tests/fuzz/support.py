"""What the fuzz tests share: the specs, the Schemathesis configuration, the running
platform as a target, and a real token (or certificate) for every operation.

Specs are discovered (``openapi/<api>/v<major>.yaml``), never listed. Public operations
are called through the gateway, as users call them; internal ones (``x-internal-callers``,
which the gateway does not route) directly on their service over mutual TLS, with the
calling service's certificate and a token of its OAuth client.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import strategies as st
from schemathesis.config import SchemathesisConfig

from charter import specs
from charterctl.user_login import user_token
from tests.support.platform import PLAIN_HTTP, ROOT

LONG = os.environ.get("CHARTER_FUZZ", "") == "long"
HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
# Demo users (passwords fixed for the suite in tests/conftest.py), least privileged first:
# an operation gets the first identity whose token satisfies its ``security``.
USERS = {
    "customer": ("alice@example.com", "DEMO_ALICE_PASSWORD"),
    "staff": ("staff@example.com", "DEMO_STAFF_PASSWORD"),
    "admin": ("admin@example.com", "DEMO_ADMIN_PASSWORD"),
}
# Hypothesis examples per operation in the fuzzing phase (examples and coverage phases
# are deterministic and not bounded by it), and steps of each stateful scenario.
MAX_EXAMPLES = 100 if LONG else 25
STATEFUL_EXAMPLES = 60 if LONG else 20
STATEFUL_STEPS = 20 if LONG else 10
STATEFUL_RESTARTS = 5  # new runs after Hypothesis could not replay a scenario (see tests)
TOKEN_REFRESH_S = 600.0
CASES: Counter[str] = Counter()  # test cases, per "<api>/<version> stateless|stateful"
# Declared answers to a well-formed request (see schema_config), and Schemathesis' own
# default for positive_data_acceptance (4.32).
BUSINESS_REFUSALS = ("402", "422")
DEFAULT_ACCEPTED = {"2xx", "3xx", "401", "403", "404", "409", "429", "5xx"}


# The pattern of notifications' EmailCreate.recipient (a test keeps the two equal).
EMAIL_PATTERN = (r"^(?=[^@]{1,64}@)"
                 r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
                 r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$")


def register_formats() -> None:
    """Generators for string formats whose full rule a regex generator cannot produce.

    ``email``: the specs pair it with a ``pattern`` whose look-ahead bounds the local part
    to 64 characters (RFC 5321); Hypothesis cannot generate from a look-ahead, so valid
    addresses come from ``st.emails()`` kept to those the pattern accepts (Schemathesis
    still checks every case against the whole schema).
    """
    email = re.compile(EMAIL_PATTERN)
    schemathesis.openapi.format("email", st.emails().filter(lambda e: email.match(e) is not None))


def spec_files() -> list[tuple[str, str]]:
    """``(api, "v<major>")`` of every spec under ``openapi/`` (not ``common``)."""
    found = []
    for path in sorted((ROOT / "openapi").glob("*/v*.yaml")):
        if path.parent.name != "common" and path.stem[1:].isdigit():
            found.append((path.parent.name, path.stem))
    return found


Security = list[frozenset[str]] | None  # alternatives of required scopes; None = anonymous


def _security(doc: dict[str, Any], op: dict[str, Any]) -> Security:
    requirements = op.get("security", doc.get("security"))
    if not requirements or any(not req for req in requirements):
        return None
    return [frozenset(s for names in req.values() for s in (names or ())) for req in requirements]


@dataclass(frozen=True)
class OperationInfo:
    """What the harness needs to know about one operation: its security and callers."""

    api: str
    version: str
    security: Security
    internal_callers: tuple[str, ...]


def operation_index(api: str, version: str, doc: dict[str, Any]) -> dict[str, OperationInfo]:
    """Every operation of ``doc`` by ``"<METHOD> <path>"`` (Schemathesis' label)."""
    index = {}
    for path, item in doc.get("paths", {}).items():
        for method in HTTP_METHODS:
            op = item.get(method)
            if op is None:
                continue
            callers = op.get("x-internal-callers", item.get("x-internal-callers", ()))
            index[f"{method.upper()} {path}"] = OperationInfo(
                api, version, _security(doc, op), tuple(callers))
    return index


def _declares(op: dict[str, Any], status: str) -> bool:
    return status in op.get("responses", {})


def schema_config(doc: dict[str, Any]) -> SchemathesisConfig:
    """All phases, positive and negative data, every check on; budget per ``CHARTER_FUZZ``.

    The only per-operation setting is derived from the spec: where an operation declares
    a business refusal of a well-formed request — ``402`` (the provider declined the
    payment) or ``422`` (it names something unusable: an unknown category, stock below
    the reserved quantity) — that answer is one the spec documents for valid data, so
    ``positive_data_acceptance`` accepts it for that operation and only there. ``400``
    never is: a schema-valid request refused as malformed means spec and service disagree.
    """
    operations = []
    for item in doc.get("paths", {}).values():
        for method in HTTP_METHODS:
            op = item.get(method)
            business = [code for code in BUSINESS_REFUSALS if op and _declares(op, code)]
            if op is not None and business:
                operations.append({
                    "include-operation-id": op["operationId"],
                    "checks": {"positive_data_acceptance": {
                        "expected-statuses": [*sorted(DEFAULT_ACCEPTED), *business]}},
                })
    return SchemathesisConfig.from_dict({
        "seed": int(os.environ.get("CHARTER_FUZZ_SEED", "20261130")),
        "request-timeout": 30.0,
        "generation": {"mode": "all", "max-examples": MAX_EXAMPLES},
        "phases": {
            "examples": {"enabled": True},
            "coverage": {"enabled": True},
            "fuzzing": {"enabled": True},
            "stateful": {"enabled": True, "max-steps": STATEFUL_STEPS},
        },
        "checks": {"enabled": True},
        "operations": operations,
    })


def unreachable(doc: dict[str, Any]) -> list[str]:
    """operationIds of internal operations that none of their ``x-internal-callers`` may
    call: no caller's OAuth client holds the scopes (the dependency manifest says who
    calls what). Only a deprecated operation may be one (``test_fuzz`` checks it): it is
    left out of the fuzzing, as no platform identity could send it a request."""
    from charter import dependencies

    manifest = dependencies.load()
    found = []
    for item in doc.get("paths", {}).values():
        for method in HTTP_METHODS:
            op = item.get(method)
            if op is None:
                continue
            callers = op.get("x-internal-callers", item.get("x-internal-callers", ()))
            security = _security(doc, op)
            if not callers or security is None:
                continue
            held = [frozenset(manifest.client_scopes(c)) if c in manifest.services else
                    frozenset() for c in callers]
            if not any(required <= scopes for required in security for scopes in held):
                found.append(str(op["operationId"]))
    return found


def load_schema(api: str, version: str) -> schemathesis.schemas.BaseSchema:
    """The bundled spec (``charter.specs``) as a Schemathesis schema, without the
    :func:`unreachable` operations."""
    register_formats()
    doc = specs.load(api, version)
    schema = schemathesis.openapi.from_dict(doc, config=schema_config(doc))
    gone = unreachable(doc)
    return schema.exclude(operation_id=gone) if gone else schema


@dataclass
class Target:
    """A running platform: where each component listens and its PKI directory."""

    env: dict[str, str]

    @property
    def mtls(self) -> bool:
        return self.env.get("CHARTER_MTLS", "1") != "0"

    @property
    def pki(self) -> Path:
        return Path(self.env.get("CHARTER_PKI_DIR") or Path(self.env["CHARTER_VAR_DIR"]) / "pki")

    def url(self, component: str) -> str:
        scheme = "https" if self.mtls and component not in PLAIN_HTTP else "http"
        return f"{scheme}://127.0.0.1:{self.env[component.upper() + '_PORT']}"

    def client_token(self, client: str) -> str:
        """A client-credentials token of ``client`` (``charter token``, its own secret)."""
        done = subprocess.run([sys.executable, "-m", "charterctl.cli", "token", "--client",
                               client], env=self.env, capture_output=True, text=True,
                              timeout=60, cwd=ROOT)
        assert done.returncode == 0, f"charter token --client {client}: {done.stderr}"
        return done.stdout.strip()

    def user_token(self, email: str, password: str) -> str:
        """A user's token through the authorization-code + PKCE flow (login, consent)."""
        redirect = f"{self.url('gateway')}/ui/oauth2-redirect.html"
        return str(user_token(self.url("auth"), email, password,
                              redirect_uri=redirect)["access_token"])


def _scopes(token: str) -> frozenset[str]:
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return frozenset(str(claims.get("scope", "")).split())


@dataclass
class Credentials:
    """Real tokens from auth: each demo user's and each calling service's."""

    target: Target
    callers: set[str]
    users: dict[str, str] = field(default_factory=dict)  # role -> token
    services: dict[str, str] = field(default_factory=dict)  # client id -> token
    obtained: float = 0.0

    def refresh(self) -> None:
        """Log every user in and get every calling service's token (again)."""
        env = self.target.env
        self.users = {role: self.target.user_token(email, env.get(var) or os.environ[var])
                      for role, (email, var) in USERS.items()}
        self.services = {c: self.target.client_token(c) for c in sorted(self.callers)}
        self.obtained = time.monotonic()

    def identity(self, info: OperationInfo, *, operator: bool = False) -> tuple[str, str | None]:
        """``(who, token)`` for an operation: its calling service for an internal one;
        else the least privileged user whose token satisfies its ``security`` (customer
        first), or with ``operator`` the most privileged (admin first).

        The stateful run uses the operator: it reads what other identities created (an
        award the orders service made for some customer), which only staff may see.
        Tokens live 15 minutes; a long run fetches new ones after 10.
        """
        if time.monotonic() - self.obtained > TOKEN_REFRESH_S:
            self.refresh()
        users = dict(reversed(self.users.items())) if operator else self.users
        pool = ({c: self.services[c] for c in info.internal_callers}
                if info.internal_callers else users)
        if info.security is None:
            return next(iter(pool)), None
        for who, token in pool.items():
            if any(required <= _scopes(token) for required in info.security):
                return who, token
        raise AssertionError(f"no identity satisfies {info}: {sorted(pool)}")


@dataclass
class Harness:
    """Where and as whom each case is sent."""

    target: Target
    credentials: Credentials
    operations: dict[str, dict[str, OperationInfo]]  # "<api>/<version>" -> label -> info

    def info(self, api: str, version: str, label: str) -> OperationInfo:
        return self.operations[f"{api}/{version}"][label]

    def call_kwargs(self, api: str, version: str, label: str) -> dict[str, Any]:
        """Base URL, and for internal operations the caller's certificate and the CA."""
        info = self.info(api, version, label)
        if not info.internal_callers:
            return {"base_url": f"{self.target.url('gateway')}/{api}/{version}"}
        caller, _ = self.credentials.identity(info)
        kwargs: dict[str, Any] = {"base_url": f"{self.target.url(api)}/{version}"}
        if self.target.mtls:
            pki = self.target.pki
            kwargs["cert"] = (str(pki / f"{caller}.pem"), str(pki / f"{caller}-key.pem"))
            kwargs["verify"] = str(pki / "ca.pem")
        return kwargs


# Explicit examples are turned into cases when pytest collects the tests, before the
# platform (and so any token) exists; they carry this value until the test swaps it.
PENDING = "Bearer pending-until-the-platform-is-up"
HARNESS: dict[str, Harness] = {}  # "current" -> the session's harness (conftest.py)


def register_auth(schema: Any, api: str, version: str, *, operator: bool = False) -> None:
    """Bearer token per operation from the session's :class:`Credentials`.

    Looked up for every case (no caching: it is a dictionary look-up), so each operation
    gets the identity its ``security`` needs (``operator``: see :meth:`Credentials.identity`).
    """

    @schema.auth(refresh_interval=None, retry_on=[])
    class PlatformAuth:
        def get(self, case: Any, ctx: Any) -> str | None:
            current = HARNESS.get("current")
            if current is None:
                return PENDING
            info = current.info(api, version, case.operation.label)
            token = current.credentials.identity(info, operator=operator)[1]
            return None if token is None else f"Bearer {token}"

        def set(self, case: Any, data: str | None, ctx: Any) -> None:
            if data is not None:
                case.headers = {**(case.headers or {}), "Authorization": data}


def authorize_pending(case: Any, harness: Harness, api: str, version: str) -> None:
    """Give an example case built at collection time its real token (see :data:`PENDING`)."""
    if (case.headers or {}).get("Authorization") != PENDING:
        return
    token = harness.credentials.identity(harness.info(api, version, case.operation.label))[1]
    if token is None:
        del case.headers["Authorization"]
    else:
        case.headers["Authorization"] = f"Bearer {token}"


_ENFORCED: set[str] = set()  # "<api>/<version> <label>" whose token check was confirmed
INVALID_TOKEN = "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJub2JvZHkifQ."  # alg none, unsigned


def assert_auth_enforced(case: Any, response: Any, call_kwargs: dict[str, Any],
                         key: str) -> None:
    """After a 2xx with a token: the same request without it, and with a forged one, is
    401. Schemathesis' own ``ignored_auth`` check (4.32) only probes ``apiKey``/``http``
    schemes; Charter's are ``oauth2`` (Connexion enforces scopes only for those), so this
    is the same probe for bearer tokens. Once per operation, like ``ignored_auth``.
    """
    token = (case.headers or {}).get("Authorization")
    if token is None or not 200 <= response.status_code < 300 or key in _ENFORCED:
        return
    for scenario, value in (("no token", None), ("a forged token", INVALID_TOKEN)):
        original = dict(case.headers)
        case.headers = {k: v for k, v in original.items() if k.lower() != "authorization"}
        if value is not None:
            case.headers["Authorization"] = value
        try:
            probe = case.call(**call_kwargs)
            curl = case.as_curl_command(base_url=call_kwargs.get("base_url"))
        finally:
            case.headers = original
        assert probe.status_code == 401, (
            f"{case.operation.label} answered {probe.status_code} with {scenario} (after "
            f"{response.status_code} with a valid one); expected 401.\nReproduce with:\n"
            f"    {curl}")
    _ENFORCED.add(key)
