"""Deprecated API versions at the gateway (governance/deprecation.yaml via
:mod:`charter.deprecation`): the same headers the services send, on the answers the gateway
makes itself too (401/403/429/413/5xx of a deprecated route), ``410 Gone`` after the
sunset without bothering the service, and the deprecation policy page the ``Link:
rel="deprecation"`` points at.

Everything is computed once at start-up; per request it is one dict lookup, plus a clock
read for deprecated routes only.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime

from charter import config, deprecation
from charter.clock import utcnow

Header = tuple[bytes, bytes]
NONE: tuple[Header, ...] = ()
POLICY_FILE = config.ROOT / "governance" / "deprecation-policy.md"
POLICY_CONTENT_TYPE = "text/markdown; charset=utf-8"


class Retiring:
    """The deprecated versions the gateway routes, with their headers and 410 body."""

    def __init__(self, policy: deprecation.DeprecationFile, base: str,
                 clock: Callable[[], datetime] = utcnow, policy_page: bytes | None = None) -> None:
        self.clock = clock
        self.policy_path = policy.policy_path
        self.policy_page = policy_page
        self._entries = {(e.api, e.version): e for e in policy.versions}
        self._headers = {k: tuple(deprecation.headers(e, policy.policy_path, base))
                         for k, e in self._entries.items()}
        self._gone = {k: json.dumps(deprecation.gone_body(e, base)).encode()
                      for k, e in self._entries.items()}

    @classmethod
    def configured(cls, public_url: str | None) -> Retiring:
        """From the deprecation file, for the gateway's public URL (else the platform's)."""
        page = POLICY_FILE.read_bytes() if POLICY_FILE.is_file() else None
        return cls(deprecation.load(), public_url or deprecation.public_base(),
                   policy_page=page)

    def headers(self, api: str, version: str) -> tuple[Header, ...]:
        """``Deprecation``/``Sunset``/``Link`` of a deprecated version, else empty."""
        return self._headers.get((api, version), NONE)

    def gone(self, api: str, version: str) -> bytes | None:
        """The 410 problem body when the version is past its sunset, else ``None``."""
        entry = self._entries.get((api, version))
        if entry is None or not entry.is_sunset(self.clock()):
            return None
        return self._gone[(api, version)]
