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

__all__ = ["CLEANUP_TIMEOUT", "Drain", "InFlight"]

#: seconds the lifespan shutdown waits for cancelled requests' upstream cleanup
CLEANUP_TIMEOUT = 10.0

log = logging.getLogger("llmplex.server")


class InFlight:
    """The HTTP requests in flight, counted by :class:`Drain` and by the routes served in
    front of the middleware stack (:mod:`llmplex.server.front`), so the drain waits for
    both."""

    __slots__ = ("_idle", "count")

    def __init__(self) -> None:
        self.count = 0
        self._idle: asyncio.Event | None = None

    def enter(self) -> None:
        self.count += 1

    def leave(self) -> None:
        self.count -= 1
        if not self.count and self._idle is not None:
            self._idle.set()

    async def idle(self, timeout: float) -> bool:
        """Wait until no request is in flight (at most ``timeout`` s): whether none is."""
        if not self.count:
            return True
        self._idle = asyncio.Event()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True


class Drain:
    """Plain ASGI middleware: the number of HTTP requests in flight (``in_flight``, shared
    with the front routes), and a lifespan shutdown that waits for it to reach zero."""

    def __init__(
        self,
        app: ASGIApp,
        cleanup_timeout: float = CLEANUP_TIMEOUT,
        in_flight: InFlight | None = None,
    ) -> None:
        self.app = app
        self.cleanup_timeout = cleanup_timeout
        self.requests = in_flight if in_flight is not None else InFlight()

    @property
    def in_flight(self) -> int:
        return self.requests.count

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, self._lifespan(receive), send)
            return
        requests = self.requests
        requests.enter()
        try:
            await self.app(scope, receive, send)
        finally:
            requests.leave()

    def _lifespan(self, receive: Receive) -> Receive:
        async def received() -> Message:
            message: Any = await receive()
            if message.get("type") == "lifespan.shutdown" and self.requests.count:
                log.info(
                    "waiting for %d cancelled request(s) to clean up upstream", self.requests.count
                )
                if not await self.requests.idle(self.cleanup_timeout):
                    log.warning(
                        "%d request(s) still cleaning up after %g s; closing anyway",
                        self.requests.count,
                        self.cleanup_timeout,
                    )
            return message  # type: ignore[no-any-return]

        return received
