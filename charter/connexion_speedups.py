"""Per-operation work Connexion 3.3 repeats on every request, done once (applied on import).

Connexion's ``FlaskOperation.fn`` is a property: every call builds a new
``FlaskDecorator`` around the handler, and that decorator's wrapper rebuilds the whole
decorator chain (``decorate``: sync/async adapter, parameter decorator with an
``inspect.signature`` of the handler, response decorator, three ``functools.wraps``) for
every request, before calling the handler. None of it depends on the request — the
request-specific parts (the operation's parameters, body schema, produced types) are
looked up from Connexion's ``operation`` context when the wrappers *run* — so building it
once per operation gives the same behaviour. Profiled on the catalog's governed read this
per-request rebuilding was ~15 % of the service's CPU (``inspect.signature`` alone ~6 %,
``asyncio.iscoroutinefunction`` ~5 %).

The patched functions keep Connexion's signatures; ``tests/charter/test_connexion_speedups.py``
checks that handlers still get their parameters, bodies and answers, and that the chain is
built once.
"""

from __future__ import annotations

import copy
import functools
import inspect
from collections.abc import Callable
from typing import Any

from asgiref.sync import async_to_sync
from connexion.apps.flask import FlaskOperation
from connexion.decorators import parameter as parameter_decorator
from connexion.decorators.main import FlaskDecorator, WSGIDecorator
from connexion.security import AbstractSecurityHandler
from connexion.utils import is_null, is_nullable
from connexion.validators import parameter as parameter_validator
from jsonschema import Draft4Validator, ValidationError

_ATTR = "_charter_decorated"


def _operation_fn(self: FlaskOperation) -> Callable[..., Any]:
    """``FlaskOperation.fn``, built on first use and kept."""
    fn: Callable[..., Any] | None = self.__dict__.get(_ATTR)
    if fn is None:
        decorator = FlaskDecorator(pythonic_params=self.pythonic_params,
                                   jsonifier=self.jsonifier)
        fn = decorator(self._fn)
        self.__dict__[_ATTR] = fn
    return fn


def _wsgi_decorator_call(self: WSGIDecorator, function: Callable[..., Any]) -> Callable[..., Any]:
    """``WSGIDecorator.__call__`` whose decorator chain is built on the first request."""
    chain: list[Callable[..., Any]] = []

    @functools.wraps(function)
    def wrapper(*_args: Any, **_kwargs: Any) -> Any:
        request = self.framework.get_request(uri_parser=self.uri_parser)
        if not chain:  # a race builds it twice: harmless, both are the same
            chain.append(self.decorate(function))
        return chain[0](request)

    return wrapper


Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def _sync_async_decorator(_self: WSGIDecorator) -> Decorator:
    """``WSGIDecorator._sync_async_decorator`` asking ``iscoroutinefunction`` once per
    handler, not once per request (a plain handler is returned as it is)."""

    def decorator(function: Callable[..., Any]) -> Callable[..., Any]:
        if not inspect.iscoroutinefunction(function):
            return function

        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return async_to_sync(function)(*args, **kwargs)

        return wrapper

    return decorator


# The security handler asks, twice per request, whether the token-info function accepts
# ``required_scopes`` / ``request`` (an ``inspect.signature`` each time).
_accepts_kwarg = functools.lru_cache(maxsize=256)(AbstractSecurityHandler._accepts_kwarg)

# One compiled validator per parameter of the spec (the key keeps the parameter alive, so
# its id cannot be reused); bounded for processes that build many apps (tests).
_PARAMETER_VALIDATORS: dict[int, tuple[dict[str, Any], Draft4Validator]] = {}
_MAX_PARAMETER_VALIDATORS = 4096


def _validate_parameter(parameter_type: str, value: Any, param: dict[str, Any],
                        param_name: str | None = None) -> str | None:
    """``ParameterValidator.validate_parameter`` with the validator built once per
    parameter (Connexion deep-copies the parameter and compiles a ``Draft4Validator`` for
    every parameter of every request); same answers and messages."""
    if is_nullable(param) and is_null(value):
        return None
    if value is not None:
        entry = _PARAMETER_VALIDATORS.get(id(param))
        if entry is None or entry[0] is not param:
            if len(_PARAMETER_VALIDATORS) >= _MAX_PARAMETER_VALIDATORS:
                _PARAMETER_VALIDATORS.clear()
            schema = copy.deepcopy(param)
            schema = schema.get("schema", schema)
            entry = (param, Draft4Validator(
                schema, format_checker=parameter_validator.draft4_format_checker))
            _PARAMETER_VALIDATORS[id(param)] = entry
        try:
            entry[1].validate(value)
        except ValidationError as exception:
            return str(exception)
        return None
    if param.get("required"):
        return f"Missing {parameter_type} parameter '{param['name']}'"
    return None


# Parameter names → Python argument names (CamelCase → snake_case with a regex, per
# parameter, per request): pure functions of the name.
for _name in ("snake_and_shadow", "sanitized", "pythonic"):
    setattr(parameter_decorator, _name,
            functools.lru_cache(maxsize=4096)(getattr(parameter_decorator, _name)))

connexion_validate_parameter = parameter_validator.ParameterValidator.validate_parameter
"""Connexion's own ``validate_parameter`` (the tests compare answers with it)."""
parameter_validator.ParameterValidator.validate_parameter = staticmethod(  # type: ignore[method-assign]
    _validate_parameter)
FlaskOperation.fn = property(_operation_fn)  # type: ignore[assignment,method-assign]
WSGIDecorator.__call__ = _wsgi_decorator_call  # type: ignore[method-assign]
WSGIDecorator._sync_async_decorator = property(_sync_async_decorator)  # type: ignore[assignment,method-assign]
AbstractSecurityHandler._accepts_kwarg = staticmethod(_accepts_kwarg)  # type: ignore[method-assign]
