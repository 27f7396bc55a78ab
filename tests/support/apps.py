"""Reaching into a Charter app a test built (``charter.service.create_app``)."""

from __future__ import annotations

from typing import Any

from charter.service import ServiceContext


def app_context(app: Any) -> ServiceContext:
    """The :class:`~charter.service.ServiceContext` of a Connexion app made by Charter."""
    ctx: ServiceContext = app.app.extensions["charter"]
    return ctx


def dependency(app: Any, name: str) -> Any:
    """The object the app was wired with as ``name`` (its service layer, metrics…)."""
    return app_context(app).deps[name]
