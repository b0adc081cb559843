"""Exception handlers: every error leaves the server in OpenAI's error shape.

Validation errors name the bad field the way OpenAI does (``messages[0].role``); llmplex
errors are mapped by :func:`~llmplex.server.errors.error_for`; anything unexpected is a
500 with a generic message (the traceback goes to the log only).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import LLMplexError
from .errors import APIError, error_for

__all__ = ["install_error_handlers", "log_error", "response_for"]

log = logging.getLogger("llmplex.server")


def log_error(error: APIError, exc: BaseException, *, streaming: bool = False) -> None:
    # The message of an llmplex error names provider and status, never keys; bodies
    # and headers of requests are never logged. The log has the error's own text, with
    # the upstream addresses the client's message leaves out.
    where = " (after the stream started)" if streaming else ""
    text = str(exc) if isinstance(exc, LLMplexError) else error.message
    if error.status >= 500:
        log.warning("%s %s%s: %s", error.status, error.code, where, text)
    else:
        log.info("%s %s%s: %s", error.status, error.code, where, text)


def _param(loc: Sequence[Any]) -> str:
    """``("messages", 0, "role")`` -> ``"messages[0].role"``, without pydantic's union
    member tags (``"str"``, ``"list[TextPart]"``...)."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str):
            if any(c in part for c in "[]-") or part in _TYPE_TAGS:
                continue
            out += f".{part}" if out else part
    return out


_TYPE_TAGS = frozenset(
    {
        "str",
        "int",
        "float",
        "bool",
        "list",
        "dict",
        "none",
        "bytes",
        "literal",
        "TextPart",
        "ChatMessage",
        "StreamOptions",
    }
)


def _validation_error(exc: RequestValidationError) -> APIError:
    errors = list(exc.errors())
    # A value failing a union (content: string or parts) gets one error per member. The
    # most specific is the deepest ("messages[0].content[1].type"), then one about the
    # value rather than "should be a string" from the member of the wrong type.
    first = dict(
        max(
            errors,
            default={},
            key=lambda e: (
                len(_param(list(e.get("loc") or ())[1:])),
                not str(e.get("type")).endswith("_type"),
            ),
        )
    )
    loc = list(first.get("loc") or ())
    where = loc[0] if loc else "body"
    kind = str(first.get("type", ""))
    text = str(first.get("msg", "invalid request"))
    if kind == "json_invalid":
        return APIError(
            400,
            f"We could not parse the JSON body of your request: {text}. Send a JSON object.",
            code="invalid_json",
        )
    param = _param(loc[1:])
    if not param:
        if kind == "missing":
            return APIError(
                400,
                f"Missing request {where}: expected a JSON object.",
                code="missing_required_parameter",
            )
        return APIError(400, f"Invalid request {where}: {text}.", code="invalid_type")
    if kind == "missing":
        return APIError(
            400,
            f"Missing required parameter: '{param}'.",
            code="missing_required_parameter",
            param=param,
        )
    code = "invalid_type" if kind.endswith(("_type", "_parsing")) else "invalid_value"
    return APIError(400, f"Invalid '{param}': {text}.", code=code, param=param)


def response_for(exc: BaseException, method: str, path: str) -> Response:
    """The error response for ``exc`` raised while serving ``method path``: what the
    app's exception handlers answer (they call this), also for the routes served in front
    of the middleware stack (:mod:`llmplex.server.front`)."""
    if isinstance(exc, APIError):
        log_error(exc, exc)
        return exc.response()
    if isinstance(exc, RequestValidationError):
        error = _validation_error(exc)
        log_error(error, exc)
        return error.response()
    if isinstance(exc, LLMplexError):
        error = error_for(exc)
        log_error(error, exc)
        return error.response()
    if isinstance(exc, StarletteHTTPException):
        if exc.status_code == 404:
            message = f"Invalid URL ({method} {path})"
        else:
            message = str(exc.detail)
        return APIError(
            exc.status_code, message, code=None, headers=dict(exc.headers or {})
        ).response()
    log.error("internal error on %s %s", method, path, exc_info=exc)
    return error_for(exc).response()


def install_error_handlers(app: FastAPI) -> None:
    async def handle(request: Request, exc: Exception) -> Response:
        return response_for(exc, request.method, request.url.path)

    for kind in (
        APIError,
        RequestValidationError,
        LLMplexError,
        StarletteHTTPException,
        Exception,
    ):
        app.add_exception_handler(kind, handle)
