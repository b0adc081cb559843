"""ASGI middleware of the server: the request body size limit."""

from __future__ import annotations

from typing import Any

from starlette.types import Message, Receive, Scope, Send

from .errors import APIError

__all__ = ["BodyLimit"]


class BodyLimit:
    """ASGI middleware: read the request body up front, refusing (413, OpenAI-shaped)
    anything over ``max_bytes``, declared or streamed; then replay it to the app."""

    def __init__(self, app: Any, max_bytes: int = 1_000_000) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None:
            try:
                too_large = int(declared) > self.max_bytes
            except ValueError:
                too_large = False  # the server itself rejects a malformed length
            if too_large:
                await self._reject(scope, receive, send)
                return
        parts: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # gone before its body arrived: nobody to answer
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_bytes:
                await self._reject(scope, receive, send)
                return
            parts.append(body)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(parts), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        error = APIError(413, f"Request body too large: the limit is {self.max_bytes} bytes.",
                         code="request_too_large", headers={"Connection": "close"})
        await error.response()(scope, receive, send)
