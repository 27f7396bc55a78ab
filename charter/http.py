"""The outbound HTTP client policy every service uses for calls to other services.

Small for now: an :class:`httpx.Client` with explicit timeouts, the caller's
``X-Correlation-Id`` and W3C trace context (a CLIENT span per request,
opentelemetry-instrumentation-httpx) propagated on every request, an optional bearer token from a
``Callable[[], str]`` (e.g. a ``ClientCredentialsTokenProvider`` from
:mod:`charter.security.client_credentials`), a bounded retry with exponential backoff
and jitter for idempotent methods only, and one overall deadline per call so that
retries never turn a 2 s timeout into a hang.
Connection errors and timeouts become :class:`charter.problems.ServiceUnavailable`.

Mutual TLS: a client for the URL of a platform service that listens with mTLS
(``https://…`` from :func:`charter.config.service_url`, ``CHARTER_MTLS`` on) presents this
process's certificate and trusts only the platform CA
(:func:`charter.security.mtls.verify_for`). The identity is ``identity=`` when given, else
``CHARTER_SERVICE`` (set by ``charter up`` for each service), else ``charter-cli``.

Resilience (:mod:`charter.resilience`, ``docs/resilience.md``): every
:class:`HttpClient` call goes through the dependency's bulkhead (excess calls fail fast),
its circuit breaker (connection errors, timeouts and 5xx answers count as failures, 4xx
answers do not; while open, calls fail fast) and a tenacity retry policy; all of them are
logged and exported as ``charter_client_*`` Prometheus metrics. A refused call raises
:class:`~charter.problems.ServiceUnavailable` (kind ``upstream-unavailable``) like an
unreachable upstream, so existing fallbacks (exchange's last known rates) apply.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from charter import resilience
from charter.observability import tracing
from charter.observability.families import process_service
from charter.observability.logs import correlation_id
from charter.problem_types import slug_of
from charter.problems import ServiceUnavailable
from charter.security import mtls

log = logging.getLogger(__name__)

CORRELATION_HEADER = "X-Correlation-Id"
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
RETRYABLE_STATUSES = frozenset({502, 503, 504})
DEFAULT_TIMEOUT = 2.0

IDEMPOTENCY_HEADER = "idempotency-key"

TokenSource = Callable[[], str]


class _DeadlineExceeded(Exception):
    """The call's overall deadline passed before another attempt could start."""


def _origin(url: httpx.URL) -> str:
    """``scheme://host:port`` of ``url`` (empty for an empty base URL)."""
    if not url.host:
        return ""
    return f"{url.scheme}://{url.netloc.decode('ascii')}"


def _outcome(status: int) -> str:
    if status < 400:
        return "success"
    return "client_error" if status < 500 else "server_error"


def current_correlation_id() -> str | None:
    """The correlation id of the request being served, if any.

    Set by :class:`charter.observability.middleware.ObservabilityMiddleware`; a2wsgi copies
    the context into Flask's worker thread. Falls back to the incoming Flask request header.
    """
    cid = correlation_id.get()
    if cid:
        return cid
    try:
        from flask import has_request_context, request

        if has_request_context():
            return request.headers.get(CORRELATION_HEADER)
    except ImportError:  # pragma: no cover - flask is a dependency
        pass
    return None


def problem_kind(response: httpx.Response) -> str | None:
    """The registered problem type (slug) of an error answer, ``None`` when it has none
    (not problem+json, not JSON, unknown type). Clients decide on this, never on the
    ``title`` (:mod:`charter.problem_types`)."""
    if response.status_code < 400:
        return None
    try:
        return slug_of(response.json())
    except ValueError:
        return None


def _add_correlation_id(request: httpx.Request) -> None:
    cid = current_correlation_id()
    if cid and CORRELATION_HEADER not in request.headers:
        request.headers[CORRELATION_HEADER] = cid


async def _add_correlation_id_async(request: httpx.Request) -> None:
    _add_correlation_id(request)


def tls_verify(base_url: str, verify: Any = None, identity: str | None = None) -> Any:
    """httpx's ``verify=``: ``verify`` when given, else the mTLS context for platform URLs.

    (httpx 0.28 ignores ``cert=`` when ``verify`` is a path, so mTLS always goes through
    an ``ssl.SSLContext`` with the client certificate loaded.)
    """
    if verify is not None:
        return verify
    return mtls.verify_for(base_url, identity) if base_url else True


def create_client(
    base_url: str = "",
    *,
    timeout: float = DEFAULT_TIMEOUT,
    connect_timeout: float | None = None,
    headers: Mapping[str, str] | None = None,
    max_connections: int = 20,
    transport: httpx.BaseTransport | None = None,
    verify: Any = None,
    identity: str | None = None,
) -> httpx.Client:
    """An ``httpx.Client`` with the platform's timeouts, limits and correlation-id hook.

    ``verify=None`` (default) chooses by ``base_url``: the mTLS client context presenting
    ``identity`` (default: this process's, see the module docstring) for a platform
    service's ``https`` URL, the system trust store otherwise. Pass an
    ``ssl.SSLContext``/``True``/``False`` to decide yourself.
    """
    verify = tls_verify(base_url, verify, identity)
    client = httpx.Client(
        base_url=base_url,
        timeout=httpx.Timeout(timeout, connect=connect_timeout or min(timeout, 1.0)),
        headers=dict(headers or {}),
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=10),
        event_hooks={"request": [_add_correlation_id]},
        transport=transport,
        verify=verify,
        follow_redirects=False,
    )
    tracing.instrument_httpx(client)  # a CLIENT span per request, traceparent injected
    return client


def create_async_client(
    base_url: str = "",
    *,
    timeout: float = DEFAULT_TIMEOUT,
    connect_timeout: float | None = None,
    headers: Mapping[str, str] | None = None,
    max_connections: int = 100,
    max_keepalive_connections: int = 20,
    transport: httpx.AsyncBaseTransport | None = None,
    verify: Any = None,
    identity: str | None = None,
) -> httpx.AsyncClient:
    """The ``httpx.AsyncClient`` twin of :func:`create_client` (for the gateway).

    For a client that calls several services, build one per upstream (each base URL gets
    its own ``verify``), or pass ``verify=mtls.client_ssl_context(identity)`` yourself:
    the context trusts only the platform CA.
    """
    verify = tls_verify(base_url, verify, identity)
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=httpx.Timeout(timeout, connect=connect_timeout or min(timeout, 1.0)),
        headers=dict(headers or {}),
        limits=httpx.Limits(max_connections=max_connections,
                            max_keepalive_connections=max_keepalive_connections),
        event_hooks={"request": [_add_correlation_id_async]},
        transport=transport,
        verify=verify,
        follow_redirects=False,
    )


class HttpClient:
    """Calls one upstream service with the platform policy (see the module docstring).

    ``retries`` is the number of extra attempts for idempotent requests (and for others
    only when the caller passes ``retry=True``, or sends an ``Idempotency-Key`` header).
    Every call is bounded by ``deadline`` seconds in total (default: ``timeout``), retries
    included. ``identity`` names the client certificate presented to mTLS services
    (default: this process's, ``CHARTER_SERVICE``, else ``charter-cli``).

    ``name`` is the dependency: its breaker and bulkhead are shared by every client of
    this process with the same name and upstream origin. ``fail_max``/``reset_timeout``
    (breaker, default 5 failures / 10 s) and ``max_concurrent`` (bulkhead, default 20)
    apply when this client is the first of its dependency;
    ``CHARTER_BREAKER_<NAME>``/``CHARTER_BULKHEAD_<NAME>`` override them.
    """

    def __init__(
        self,
        base_url: str,
        *,
        name: str = "upstream",
        timeout: float = DEFAULT_TIMEOUT,
        deadline: float | None = None,
        retries: int = 1,
        backoff: float = 0.05,
        token: TokenSource | None = None,
        client: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
        identity: str | None = None,
        fail_max: int | None = None,
        reset_timeout: float | None = None,
        max_concurrent: int | None = None,
    ) -> None:
        self.name = name
        self.timeout = timeout
        self.deadline = deadline if deadline is not None else timeout
        self.retries = max(0, retries)
        self.backoff = backoff
        self.token = token
        self.client = client or create_client(base_url, timeout=timeout, identity=identity)
        self._sleep = sleep
        self._fail_max = fail_max
        self._reset_timeout = reset_timeout
        self._max_concurrent = max_concurrent
        # Fail closed on a malformed CHARTER_BREAKER_/CHARTER_BULKHEAD_ variable now,
        # not at the first call.
        resilience.settings_for(name, fail_max=fail_max, reset_timeout=reset_timeout,
                                max_concurrent=max_concurrent)
        self._base_origin = _origin(self.client.base_url)

    def policy(self, url: str = "") -> resilience.Policy:
        """The breaker and bulkhead guarding calls to ``url`` (relative: the base URL)."""
        origin = self._base_origin
        if url.startswith(("http://", "https://")):
            origin = _origin(httpx.URL(url))
        return resilience.policy_for(self.name, origin, fail_max=self._fail_max,
                                     reset_timeout=self._reset_timeout,
                                     max_concurrent=self._max_concurrent)

    def request(
        self,
        method: str,
        url: str,
        *,
        retry: bool | None = None,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send a request; any HTTP status is returned, transport failures raise 503.

        Raises :class:`ServiceUnavailable` (kind ``upstream-unavailable``) when the
        upstream cannot be reached in time, and at once when the dependency's breaker is
        open or its bulkhead is full. When the upstream answers 401 and the token source
        can ``invalidate()`` its cached token (as :class:`ClientCredentialsTokenProvider`
        can), the request is sent once more with a fresh token.
        """
        response = self._send(method, url, retry=retry, headers=headers, **kwargs)
        invalidate = getattr(self.token, "invalidate", None)
        if response.status_code == 401 and callable(invalidate):
            # The cached token was refused (revoked, signing key rotated): fetch a new one
            # and try once more.
            response.close()
            invalidate()
            response = self._send(method, url, retry=retry, headers=headers, **kwargs)
        return response

    def _bearer(self) -> dict[str, str]:
        if self.token is None:
            return {}
        try:
            return {"Authorization": f"Bearer {self.token()}"}
        except ServiceUnavailable:
            raise
        except Exception as exc:  # the token source failed: upstream unusable
            log.warning("%s: no access token: %s", self.name, type(exc).__name__)
            raise ServiceUnavailable(f"{self.name} is unavailable (no access token)",
                                     kind="upstream-unavailable") from exc

    def _send(
        self,
        method: str,
        url: str,
        *,
        retry: bool | None,
        headers: Mapping[str, str] | None,
        **kwargs: Any,
    ) -> httpx.Response:
        method = method.upper()
        out_headers = {**dict(headers or {}), **self._bearer()}
        if retry is None:
            keyed = any(k.lower() == IDEMPOTENCY_HEADER for k in out_headers)
            may_retry = method in IDEMPOTENT_METHODS or keyed
        else:
            may_retry = retry
        policy = self.policy(url)
        try:
            policy.bulkhead.acquire()
        except resilience.Rejected as exc:
            resilience.reject(exc)
            raise ServiceUnavailable(f"{self.name} is unavailable: {exc.detail}",
                                     kind="upstream-unavailable") from None
        started = time.monotonic()

        def attempt() -> httpx.Response:
            remaining = self.deadline - (time.monotonic() - started)
            if remaining <= 0:
                raise _DeadlineExceeded("deadline exceeded")
            per_try = min(self.timeout, remaining)
            ticket = policy.breaker.admit()
            failed: bool | None = None  # None: neither (a bug of ours, not an outage)
            try:
                response = self.client.request(
                    method, url, headers=out_headers,
                    timeout=httpx.Timeout(per_try, connect=min(per_try, 1.0)), **kwargs,
                )
                failed = response.status_code >= 500  # a 4xx answer is not an outage
                return response
            except httpx.TimeoutException as exc:
                failed = True
                raise resilience.AttemptFailed(f"timeout ({type(exc).__name__})") from exc
            except httpx.TransportError as exc:
                failed = True
                raise resilience.AttemptFailed(
                    f"connection failed ({type(exc).__name__})") from exc
            finally:
                policy.breaker.record(ticket, failed)

        retrying = resilience.retrying(
            self.name,
            attempts=1 + (self.retries if may_retry else 0),
            deadline=self.deadline,
            backoff=self.backoff,
            sleep=self._sleep,
            retry_result=lambda r: r.status_code in RETRYABLE_STATUSES,
            discard_result=lambda r: r.close(),
        )
        try:
            response: httpx.Response = retrying(attempt)
        except resilience.Rejected as exc:
            resilience.reject(exc)
            raise ServiceUnavailable(f"{self.name} is unavailable: {exc.detail}",
                                     kind="upstream-unavailable") from None
        except (resilience.AttemptFailed, _DeadlineExceeded) as exc:
            resilience.REQUESTS.labels(process_service(), self.name, "unavailable").inc()
            log.warning("%s %s %s: unavailable: %s", self.name, method, url, exc)
            raise ServiceUnavailable(f"{self.name} is unavailable: {exc}",
                                     kind="upstream-unavailable") from None
        finally:
            policy.bulkhead.release()
        resilience.REQUESTS.labels(process_service(), self.name,
                                   _outcome(response.status_code)).inc()
        return response

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        """``GET`` with the policy."""
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        """``POST`` with the policy (retried only with ``retry=True``)."""
        return self.request("POST", url, **kwargs)

    def close(self) -> None:
        """Close pooled connections."""
        self.client.close()
