"""An ASGI middleware that records what reached a real app served in a test."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class HeaderRecorder:
    """Wraps an ASGI ``app``; ``seen`` holds the headers of every HTTP request, in order.

    Header names are lower case; the request path is under the key ``":path"``.
    """

    app: Any
    seen: list[dict[str, str]] = field(default_factory=list)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = {k.decode().lower(): v.decode() for k, v in scope.get("headers", [])}
            self.seen.append(headers | {":path": scope["path"]})
        await self.app(scope, receive, send)
