"""A catalog ASGI factory for the subprocess test: test JWKS from a file, given database.

``uvicorn --factory mtls_app:create_asgi`` with ``MTLS_TEST_JWKS`` (a JWKS JSON file) and
``CATALOG_DATABASE_URL`` set; everything else is the real catalog app.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from charter import config
from charter.cache import TTLCache
from charter.db import Database
from charter.security.tokens import JWKSCache, TokenVerifier
from charter.testing import AUDIENCE, ISSUER
from services.catalog.app import create_app


def create_asgi() -> Any:
    document = json.loads(Path(os.environ["MTLS_TEST_JWKS"]).read_text())
    jwks = JWKSCache(lambda: document)
    jwks.refresh()
    settings = config.AuthSettings(issuer=ISSUER, audience=AUDIENCE, jwks_url="")
    return create_app(db=Database(config.database_url("catalog")),
                      verifier=TokenVerifier(settings, jwks), cache=TTLCache())
