"""FastAPI + PyJWT (RS256, JWKS fetched once at start) + pydantic: ``GET
/v1/products/{id}`` from the catalog's SQLite file with the stdlib ``sqlite3`` driver (the
one SQLAlchemy's pysqlite dialect uses), the same query as the catalog's product read.

Configured by environment: ``PEER_DB`` (SQLite file), ``PEER_JWKS_URL``,
``PEER_ISSUER``, ``PEER_AUDIENCE``. Run with uvicorn (uvloop, httptools).
"""

from __future__ import annotations

import json
import os
import sqlite3
import urllib.request
from datetime import datetime
from typing import Annotated, Any

import jwt
from fastapi import Depends, FastAPI, HTTPException, Path
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

SQL = ("SELECT id, sku, name, description, category_id, price, currency, active, "
       "created_at, updated_at FROM products WHERE id = ?")


def _load_keys(url: str) -> dict[str, Any]:
    """The JWKS signing keys by ``kid``, fetched once when the process starts."""
    with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - configured URL
        document = json.load(resp)
    return {k["kid"]: jwt.PyJWK(k).key for k in document["keys"]}


KEYS = _load_keys(os.environ["PEER_JWKS_URL"])
ISSUER = os.environ["PEER_ISSUER"]
AUDIENCE = os.environ.get("PEER_AUDIENCE", "charter-api")
DB = sqlite3.connect(f"file:{os.environ['PEER_DB']}?mode=ro", uri=True,
                     check_same_thread=False)

app = FastAPI(title="peer: FastAPI + PyJWT")
bearer = HTTPBearer()


class Product(BaseModel):
    """The catalog's product representation."""

    id: int
    sku: str
    name: str
    description: str
    category_id: int
    price: int
    currency: str
    active: bool
    created_at: datetime
    updated_at: datetime


def claims(credentials: Annotated[HTTPAuthorizationCredentials, Depends(bearer)]
           ) -> dict[str, Any]:
    """The verified access token's claims; 401 for any invalid token, 403 without scope."""
    token = credentials.credentials
    try:
        key = KEYS[jwt.get_unverified_header(token)["kid"]]
        decoded: dict[str, Any] = jwt.decode(
            token, key, algorithms=["RS256"], audience=AUDIENCE, issuer=ISSUER, leeway=30,
            options={"require": ["exp", "iat", "iss", "aud", "sub", "scope"]})
    except (jwt.PyJWTError, KeyError) as exc:
        raise HTTPException(401, "invalid token") from exc
    if "catalog:read" not in str(decoded["scope"]).split():
        raise HTTPException(403, "insufficient scope")
    return decoded


@app.get("/v1/products/{product_id}", response_model=Product)
async def get_product(product_id: Annotated[int, Path(ge=1)],
                      _claims: Annotated[dict[str, Any], Depends(claims)]) -> Product:
    """One product by id (404 when absent)."""
    row = DB.execute(SQL, (product_id,)).fetchone()
    if row is None:
        raise HTTPException(404, "no such product")
    fields = dict(zip(Product.model_fields, row, strict=True))
    return Product(**fields)
