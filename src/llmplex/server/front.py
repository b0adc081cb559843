"""The hot routes served in front of the middleware stack: ``POST /v1/chat/completions``,
``POST /v1/responses`` and Anthropic's ``POST /v1/messages``.

Every request of the app normally passes ten ASGI layers before its route runs (the
request id, metrics, the drain count, the Host check, the body limit, Starlette's error
and exception middlewares, FastAPI's own, the router), and each of its writes passes
them back: serving the chat route past them took 8 to 10% off the server's CPU per
request at c=16 (``bench/RESULTS.md``). :class:`Front` does what those layers do for
these routes, in one function and one ``send`` wrapper, in the same order and with the
same answers:

1. the request id (the client's sane ``x-request-id`` or a new one) is set for the logs
   and added to the response's headers;
2. the request counts as in flight for the graceful drain (:class:`~.shutdown.InFlight`);
3. a ``Host`` the server does not answer to gets the 403 of
   :class:`~.middleware.HostCheck`, a body over the limit the 413 of
   :class:`~.middleware.BodyLimit` (both counted under the route ``unmatched``, as no
   route ran);
4. the route's handler runs (:func:`llmplex.server.fastpath.handler` for chat
   completions and responses; the Messages route answers its own errors in Anthropic's
   shape); what it raises is answered by :func:`~.handlers.response_for`, as the app's
   exception handlers would;
5. the metrics count the answer, its duration, a stream's first byte and the streams
   open (:meth:`~.metrics.Metrics.answered`).

Other requests, and every request of an app with CORS or traces (whose middlewares are
not repeated here), go through the whole stack. ``tests/test_server_front.py`` serves the
same requests both ways and compares the answers byte for byte.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.types import Message, Receive, Scope, Send

from .handlers import response_for
from .middleware import HostCheck, TooLarge, read_body, replaying, too_large
from .request_id import HEADER, choose, request_id

if TYPE_CHECKING:
    from .fastpath import Handler
    from .metrics import Metrics
    from .shutdown import InFlight

__all__ = ["Front"]

_EVENT_STREAM = b"text/event-stream"


class Front:
    """Serves the ``routes`` (``POST`` path -> handler) of the app it is the front of
    (:meth:`serves` says which requests; the app sends the others through its stack)."""

    def __init__(
        self,
        routes: Mapping[str, Handler],
        *,
        host_check: HostCheck,
        max_body_bytes: int,
        in_flight: InFlight,
        metrics: Metrics | None,
    ) -> None:
        self.routes = dict(routes)
        self.host_check = host_check
        self.max_body_bytes = max_body_bytes
        self.in_flight = in_flight
        self.metrics = metrics

    def serves(self, scope: Scope) -> Handler | None:
        """The handler for ``scope`` when this serves it."""
        if scope["type"] != "http" or scope.get("method") != "POST" or scope.get("root_path"):
            return None
        return self.routes.get(scope["path"])

    async def serve(self, handle: Handler, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer the request of ``scope`` with ``handle`` (:meth:`serves` gave it)."""
        began = time.perf_counter()
        host = given = declared = None
        for name, value in scope["headers"]:
            if name == b"host":
                if host is None:
                    host = value
            elif name == HEADER:
                if given is None:
                    given = value
            elif name == b"content-length" and declared is None:
                declared = value
        rid = choose(given)
        raw_id = rid.encode("ascii")
        metrics = self.metrics
        status = 500  # a handler that raised past its error response: what the client gets
        streaming = False
        first: float | None = None

        async def tagged(message: Message) -> None:
            nonlocal status, streaming, first
            kind = message["type"]
            if kind == "http.response.start":
                status = message["status"]
                headers = []
                for name, value in message.get("headers") or ():
                    if name.lower() == HEADER:
                        continue
                    if name == b"content-type" and value.startswith(_EVENT_STREAM):
                        streaming = True
                        if metrics is not None:
                            metrics.active_streams.inc()
                    headers.append((name, value))
                headers.append((HEADER, raw_id))
                message = {**message, "headers": headers}
            elif streaming and first is None and message.get("body"):
                first = time.perf_counter()
            await send(message)

        token = request_id.set(rid)
        route = "unmatched"
        self.in_flight.enter()
        try:
            refused = self.host_check.refusal(None if host is None else host.decode("latin-1"))
            if refused is not None:
                await refused.response()(scope, receive, tagged)
                return
            try:
                body = await read_body(receive, declared, self.max_body_bytes)
            except TooLarge:
                await too_large(scope["path"], self.max_body_bytes)(scope, receive, tagged)
                return
            if body is None:
                return  # gone before its body arrived: nobody to answer
            route = scope["path"]
            replay = replaying(body, receive)
            request = Request(scope, replay)
            try:
                response: Any = await handle(request)
            except Exception as exc:
                response = response_for(exc, "POST", route)
            await response(scope, replay, tagged)
        finally:
            self.in_flight.leave()
            if metrics is not None:
                metrics.finished(route, "POST", status, began, streaming, first)
            request_id.reset(token)
