"""Graceful shutdown's last step: the upstream cleanup of cancelled requests finishes
before the app closes its client.

On SIGTERM uvicorn stops accepting, closes idle kept-alive connections (busy ones close
after their current response), waits up to its drain timeout
(``timeout_graceful_shutdown``, ``llmplex serve --drain-timeout``) for running requests,
then cancels those still running and at once starts the app's lifespan shutdown, which
closes the upstream connection pool. A cancelled stream's cleanup (deleting an upstream
chat, cancelling a prediction) still needs that pool: :class:`Drain` counts the requests
in flight and holds the lifespan shutdown until they have ended (at most
:data:`CLEANUP_TIMEOUT` seconds).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CLEANUP_TIMEOUT", "Drain"]

#: seconds the lifespan shutdown waits for cancelled requests' upstream cleanup
CLEANUP_TIMEOUT = 10.0

log = logging.getLogger("llmplex.server")


class Drain:
    """Plain ASGI middleware: the number of HTTP requests in flight, and a lifespan
    shutdown that waits for it to reach zero."""

    def __init__(self, app: ASGIApp, cleanup_timeout: float = CLEANUP_TIMEOUT) -> None:
        self.app = app
        self.cleanup_timeout = cleanup_timeout
        self.in_flight = 0
        self._idle: asyncio.Event | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, self._lifespan(receive), send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
            if not self.in_flight and self._idle is not None:
                self._idle.set()

    def _lifespan(self, receive: Receive) -> Receive:
        async def received() -> Message:
            message: Any = await receive()
            if message.get("type") == "lifespan.shutdown" and self.in_flight:
                self._idle = asyncio.Event()
                log.info("waiting for %d cancelled request(s) to clean up upstream", self.in_flight)
                try:
                    await asyncio.wait_for(self._idle.wait(), self.cleanup_timeout)
                except TimeoutError:
                    log.warning(
                        "%d request(s) still cleaning up after %g s; closing anyway",
                        self.in_flight,
                        self.cleanup_timeout,
                    )
            return message  # type: ignore[no-any-return]

        return received
