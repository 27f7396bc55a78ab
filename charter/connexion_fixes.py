"""Four narrow corrections to Connexion 3.3 (and the Starlette under it), applied on import.

Every Charter operation documents its errors as ``application/problem+json`` next to its
``application/json`` success body. Connexion infers a handler's content type from *all*
of the operation's responses and, seeing two, refuses to serialise a plain dict
("Multiple response content types are defined…"). Handlers only ever return success
bodies (errors are raised as :class:`charter.problems.Problem`), so when the inference
is ambiguous and ``application/json`` is among the choices, we pick it.

Connexion's JSON request-body validator decodes the raw bytes before parsing them, so a
body that is not valid UTF-8 escapes as ``UnicodeDecodeError`` and becomes a 500 (found by
Schemathesis). Such a body is the client's mistake: it is answered 400 problem+json, the
same answer as any other body that is not JSON.

Connexion adds one Starlette route per operation, and Starlette's 405 lists in ``Allow``
only the methods of the first route matching the path: ``OPTIONS /v1/notifications``
(public ``GET``, internal ``POST``) answered ``Allow: POST``. RFC 9110 wants every method
of the resource, so each route of a path carries the union, used for its 405.

Connexion mounts each API under its base path with a Starlette ``Mount``, whose pattern
``/v1/{path:path}`` is ``.*`` — no line break. A request path with an encoded line break
(``/v1/reservations/a%0Ab``) missed the mount, so Connexion never routed or validated it,
yet Flask found the handler, which then failed outside Connexion's operation context
(500 in every service; found by Schemathesis). The ``path`` convertor matches any
character, so such a request is routed and its parameter validated like any other.
"""

from __future__ import annotations

from typing import Any

from connexion import utils
from connexion.context import operation
from connexion.decorators.response import BaseResponseDecorator
from connexion.exceptions import BadRequestProblem, NonConformingResponseHeaders
from connexion.middleware.routing import RoutingAPI
from connexion.validators.json import JSONRequestBodyValidator
from starlette.convertors import CONVERTOR_TYPES
from starlette.exceptions import HTTPException
from starlette.routing import Route

_original = BaseResponseDecorator._infer_content_type


def _infer_content_type(data: Any, headers: dict[str, Any]) -> str | None:
    try:
        return _original(data, headers)
    except NonConformingResponseHeaders:
        if utils.extract_content_type(headers) is None and "application/json" in set(
            operation.produces
        ):
            return "application/json"
        raise


BaseResponseDecorator._infer_content_type = staticmethod(_infer_content_type)  # type: ignore[method-assign,assignment]


_original_parse = JSONRequestBodyValidator._parse


async def _parse_json(self: JSONRequestBodyValidator, stream: Any, scope: Any) -> Any:
    try:
        return await _original_parse(self, stream, scope)
    except UnicodeDecodeError as exc:
        raise BadRequestProblem(
            detail=f"Request body is not valid {self._encoding}: {exc.reason}") from None


JSONRequestBodyValidator._parse = _parse_json  # type: ignore[method-assign]


_original_add_operation = RoutingAPI._add_operation_internal
_original_route_handle = Route.handle


def _add_operation(self: RoutingAPI, method: str, path: str, operation_: Any,
                   name: str | None = None) -> None:
    _original_add_operation(self, method, path, operation_, name)
    same_path = [r for r in self.router.routes if isinstance(r, Route) and r.path == path]
    allowed = sorted({m for r in same_path for m in (r.methods or ())})
    for route in same_path:
        route.charter_allow = allowed  # type: ignore[attr-defined]


async def _route_handle(self: Route, scope: Any, receive: Any, send: Any) -> None:
    allowed = getattr(self, "charter_allow", None)
    if allowed and self.methods and scope["method"] not in self.methods and "app" in scope:
        raise HTTPException(status_code=405, headers={"Allow": ", ".join(allowed)})
    await _original_route_handle(self, scope, receive, send)


RoutingAPI._add_operation_internal = _add_operation  # type: ignore[method-assign]
Route.handle = _route_handle  # type: ignore[method-assign]


CONVERTOR_TYPES["path"].regex = "(?s:.*)"  # type: ignore[misc]
