"""One narrow correction to Connexion 3.3's response handling, applied on import.

Every Charter operation documents its errors as ``application/problem+json`` next to its
``application/json`` success body. Connexion infers a handler's content type from *all*
of the operation's responses and, seeing two, refuses to serialise a plain dict
("Multiple response content types are defined…"). Handlers only ever return success
bodies (errors are raised as :class:`charter.problems.Problem`), so when the inference
is ambiguous and ``application/json`` is among the choices, we pick it.
"""

from __future__ import annotations

from typing import Any

from connexion import utils
from connexion.context import operation
from connexion.decorators.response import BaseResponseDecorator
from connexion.exceptions import NonConformingResponseHeaders

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
