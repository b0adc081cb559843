"""What FastAPI does per request for a route taking one pydantic body, done directly, for
the hot routes (chat completions).

FastAPI solves a route's dependencies (the bearer scheme, the body) through generic
machinery that costs ~7% of a request's CPU. :func:`route` mounts a plain Starlette route
in front of the FastAPI one (which stays, for the OpenAPI schema and its docs) and does
the same steps in the same order with the same errors:

1. the body is read; JSON is parsed when the content type is JSON (``application/json``,
   ``application/*+json``); malformed JSON is a ``RequestValidationError`` of type
   ``json_invalid`` at ``("body", position)``, raised before anything else (a body
   that is not UTF-8: a 400 "There was an error parsing the body");
2. the route's dependencies run (the API-key check);
3. the body is validated against the model; no body is ``missing`` at ``("body",)``,
   a failure is pydantic's errors with ``"body"`` in front of each ``loc``.

The app's exception handlers then answer exactly as for the FastAPI route.
"""

from __future__ import annotations

import email.message
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import HTTPException
from fastapi.exceptions import RequestValidationError
from fastapi.security.utils import get_authorization_scheme_param
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import Scope

__all__ = [
    "Handler",
    "JSONAnswer",
    "bearer_token",
    "handler",
    "read_json",
    "route",
    "validate_body",
]

M = TypeVar("M", bound=BaseModel)

_NO_BODY = object()


def bearer_token(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else ``None`` (what
    FastAPI's ``HTTPBearer(auto_error=False)`` gives)."""
    authorization = request.headers.get("authorization")
    scheme, credentials = get_authorization_scheme_param(authorization)
    if not (authorization and scheme and credentials) or scheme.lower() != "bearer":
        return None
    return credentials


def _is_json(content_type: str) -> bool:
    if content_type == "application/json":  # the common case, without the parser
        return True
    message = email.message.Message()
    message["content-type"] = content_type
    if message.get_content_maintype() != "application":
        return False
    subtype = message.get_content_subtype()
    return subtype == "json" or subtype.endswith("+json")


async def read_json(request: Request) -> Any:
    """The body as FastAPI reads it for a JSON body parameter: parsed JSON, the raw bytes
    when the content type is not JSON (validation then refuses them), or a marker for no
    body (missing)."""
    raw = await request.body()
    if not raw:
        return _NO_BODY
    content_type = request.headers.get("content-type")
    if not content_type or not _is_json(content_type):
        return raw  # (FastAPI's strict content type: not parsed as JSON)
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise RequestValidationError(
            [
                {
                    "type": "json_invalid",
                    "loc": ("body", exc.pos),
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": {"error": exc.msg},
                }
            ],
            body=exc.doc,
        ) from exc
    except ValueError as exc:  # not UTF-8 (FastAPI: any other failure to read the body)
        raise HTTPException(400, "There was an error parsing the body") from exc


def validate_body(model: type[M], body: Any) -> M:
    """``body`` (from :func:`read_json`) as ``model``, or FastAPI's validation error."""
    if body is _NO_BODY:
        raise RequestValidationError(
            [{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}]
        )
    try:
        return model.model_validate(body, from_attributes=True)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in exc.errors(include_url=False)],
            body=body,
        ) from None


Handler = Callable[[Request], Awaitable[Response]]


def handler(
    path: str,
    model: type[M],
    authorize: Callable[[Request], None],
    endpoint: Callable[[M, Request], Awaitable[Any]],
) -> Handler:
    """The request handler of a ``POST path`` route: ``endpoint(body, request)`` after
    the steps of the module docstring, ``authorize(request)`` being the route's
    dependencies. Errors are raised, for the app's exception handlers to answer."""

    async def handle(request: Request) -> Response:
        data = await read_json(request)
        authorize(request)
        answer = await endpoint(validate_body(model, data), request)
        if not isinstance(answer, Response):  # pragma: no cover - the endpoints answer
            raise TypeError(f"{path}: the endpoint returned {type(answer).__name__}")
        return answer

    return handle


def route(path: str, handle: Handler) -> Route:
    """A ``POST path`` Starlette route serving ``handle`` (from :func:`handler`)."""
    return _NamedRoute(path, handle, methods=["POST"])


class JSONAnswer(Response):
    """A 200 with a JSON body: Starlette's ``JSONResponse(content)``, the same bytes and
    headers, without its generic header building (the hot routes' answers)."""

    media_type = "application/json"

    def __init__(self, content: Any) -> None:
        self.status_code = 200
        self.background = None
        self.body = json.dumps(
            content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
        ).encode("utf-8")
        self.raw_headers = [
            (b"content-length", str(len(self.body)).encode("latin-1")),
            (b"content-type", b"application/json"),
        ]


class _NamedRoute(Route):
    """A route that names itself in the scope (``scope["route"]``) as FastAPI's do, for
    what reads the route's template (the metrics' ``route`` label)."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        if match is not Match.NONE:
            child["route"] = self
        return match, child
