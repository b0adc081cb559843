"""A request id on every response (``x-request-id``) and in every log line of its request.

The client's own ``x-request-id`` is kept when it is sane (1 to 128 characters of
``A-Z a-z 0-9 . _ : -``, so it can go into logs and headers as it is); otherwise one is
generated. It is set in :data:`request_id` (a context variable: the tasks a request
starts, such as its upstream stream, see it too) and added to the response's headers,
errors and streams included. :class:`~llmplex.server.logs.RequestIdFilter` puts it on log
records.
"""

from __future__ import annotations

import re
import secrets
from contextvars import ContextVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["HEADER", "RequestId", "choose", "request_id"]

#: the id of the request being served in this context (None: outside any request)
request_id: ContextVar[str | None] = ContextVar("llmplex_request_id", default=None)

HEADER = b"x-request-id"
_SANE = re.compile(rb"[A-Za-z0-9._:-]{1,128}")


def choose(given: bytes | None) -> str:
    """The request's id: the client's ``x-request-id`` value when sane, else a new one."""
    if given is not None and _SANE.fullmatch(given):
        return given.decode("ascii")
    return "req_" + secrets.token_hex(12)


class RequestId:
    """Plain ASGI middleware (no buffering of streams): the request's id in
    :data:`request_id` and in its response's ``x-request-id`` header."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = None
        for name, value in scope.get("headers") or ():
            if name == HEADER:  # ASGI header names are lower-case
                given = value
                break
        rid = choose(given)
        raw = rid.encode("ascii")

        async def tagged(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers") or () if k.lower() != HEADER]
                headers.append((HEADER, raw))
                message = {**message, "headers": headers}
            await send(message)

        token = request_id.set(rid)
        try:
            await self.app(scope, receive, tagged)
        finally:
            request_id.reset(token)
