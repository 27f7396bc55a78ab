"""Plain Flask, no auth: ``GET /v1/products/<id>`` from the catalog's SQLite file with the
stdlib ``sqlite3`` driver (the same query). Run on gunicorn (2 workers × 4 threads);
``PEER_DB`` names the SQLite file."""

from __future__ import annotations

import os
import sqlite3
import threading
from typing import Any

from flask import Flask, abort, jsonify

SQL = ("SELECT id, sku, name, description, category_id, price, currency, active, "
       "created_at, updated_at FROM products WHERE id = ?")
COLUMNS = ("id", "sku", "name", "description", "category_id", "price", "currency",
           "active", "created_at", "updated_at")

app = Flask(__name__)
_local = threading.local()


def _db() -> sqlite3.Connection:
    """One read-only connection per worker thread (sqlite3 connections are per thread)."""
    conn: sqlite3.Connection | None = getattr(_local, "conn", None)
    if conn is None:
        conn = sqlite3.connect(f"file:{os.environ['PEER_DB']}?mode=ro", uri=True)
        _local.conn = conn
    return conn


@app.get("/v1/products/<int:product_id>")
def get_product(product_id: int) -> Any:
    """One product by id (404 when absent)."""
    row = _db().execute(SQL, (product_id,)).fetchone()
    if row is None:
        abort(404)
    product = dict(zip(COLUMNS, row, strict=True))
    product["active"] = bool(product["active"])
    return jsonify(product)
