"""ASGI middleware of the server: the Host header check and the request body size limit.

:class:`HostCheck` protects a server on a loopback address from DNS rebinding: a web page
the user visits can point a name of its own (``evil.example``) at 127.0.0.1 and then
drive ``http://evil.example:1337`` from the browser, same-origin, with no API key to stop
it. Every request the browser sends that way carries ``Host: evil.example:1337``, while a
client that means to talk to the server names it ``localhost``, ``127.0.0.1`` or
``[::1]``; so any other Host is refused (403) before anything else runs, as Jupyter and
other local servers do. A deployment reached under other names passes them
(``allowed_hosts``), or ``["*"]`` to turn the check off (a server on a public address,
behind its API keys); :func:`allowed_hosts_for` says which for a bind address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import Any

from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from .errors import APIError

__all__ = [
    "LOOPBACK_HOSTS",
    "BodyLimit",
    "HostCheck",
    "TooLarge",
    "allowed_hosts_for",
    "is_loopback",
    "read_body",
    "replaying",
    "too_large",
]

#: Host header names that always reach a server (they name the local machine itself)
LOOPBACK_HOSTS: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")


def _host_name(value: str) -> str:
    """The host of a Host header value or a configured name: without port or brackets,
    lower case, without a trailing dot (``[::1]:1337`` -> ``::1``)."""
    value = value.strip().lower()
    if value.startswith("["):  # [v6] or [v6]:port
        end = value.find("]")
        rest = value[end + 1 :]
        if end < 0 or (rest and not (rest[0] == ":" and rest[1:].isdigit())):
            return value  # malformed: matches no name
        return value[1:end]
    if value.count(":") == 1:  # name:port (a bare IPv6 address has several colons)
        value, port = value.split(":")
        if port and not port.isdigit():
            return value + ":" + port  # malformed: matches no name
    return value.removesuffix(".")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a bind address or a Host header) names this machine only:
    ``localhost`` or a loopback address (127.0.0.0/8, ``::1``)."""
    name = _host_name(host)
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def allowed_hosts_for(bind_host: str, names: Iterable[str] = ()) -> list[str]:
    """``create_app``'s ``allowed_hosts`` for a server bound to ``bind_host``: on a
    loopback address the loopback names and ``names``; elsewhere ``names`` if any were
    given (with the bind address itself, unless a wildcard like ``0.0.0.0``), else
    ``["*"]``: clients reach a public server under names it cannot know."""
    extra = [n for n in names if n]
    if is_loopback(bind_host):
        return [*LOOPBACK_HOSTS, *extra]
    if not extra:
        return ["*"]
    try:
        wildcard = ipaddress.ip_address(_host_name(bind_host)).is_unspecified
    except ValueError:
        wildcard = False
    return [*LOOPBACK_HOSTS, *extra, *([] if wildcard else [bind_host])]


class HostCheck:
    """ASGI middleware: refuse (403, OpenAI-shaped, code ``host_not_allowed``) HTTP and
    WebSocket requests whose ``Host`` header is not one of ``allowed_hosts`` (any port)
    or of :data:`LOOPBACK_HOSTS` (or another loopback address, as ``127.0.0.2``),
    before anything else runs. Every path is covered,
    ``/health`` and the docs too (a rebinding page could read them). ``"*"`` among the
    names turns the check off. A request without a Host header (HTTP/1.0 tools; no
    browser sends one) passes.

    Names compare case-insensitively, without port, brackets or a trailing dot; an
    IPv6 address is given without brackets (``"::1"``), or with them."""

    def __init__(self, app: Any, allowed_hosts: Sequence[str] | None = None) -> None:
        self.app = app
        names = list(allowed_hosts or ())
        self.any = "*" in names
        self.allowed = frozenset(_host_name(n) for n in (*LOOPBACK_HOSTS, *names) if n != "*")

    def refusal(self, host: str | None) -> APIError | None:
        """The 403 for a request whose ``Host`` header is ``host`` (None: it had none),
        or None when it may pass."""
        if self.any or host is None or _host_name(host) in self.allowed or is_loopback(host):
            return None
        return APIError(
            403,
            f"Host {host[:100]!r} is not allowed: this server answers only "
            "requests addressed to it by the names it was configured with "
            "(localhost, 127.0.0.1, [::1] and its allowed hosts), which "
            "protects it from DNS rebinding.",
            code="host_not_allowed",
            param=None,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.any or scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = None
        for name, value in scope.get("headers") or ():
            if name == b"host":
                host = value.decode("latin-1")
                break
        error = self.refusal(host)
        if error is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
        else:
            await error.response()(scope, receive, send)


class TooLarge(Exception):
    """A request body over the limit (:func:`read_body`)."""


async def read_body(receive: Receive, declared: bytes | None, max_bytes: int) -> bytes | None:
    """The whole request body, at most ``max_bytes`` (``declared``: its Content-Length
    header, if any), else :class:`TooLarge`; None when the client left before sending it
    (nobody to answer)."""
    if declared is not None:
        try:
            too_large = int(declared) > max_bytes
        except ValueError:
            too_large = False  # the server itself rejects a malformed length
        if too_large:
            raise TooLarge()
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        body = message.get("body", b"")
        size += len(body)
        if size > max_bytes:
            raise TooLarge()
        parts.append(body)
        if not message.get("more_body", False):
            return parts[0] if len(parts) == 1 else b"".join(parts)


def replaying(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the whole ``body`` (read by :func:`read_body`) first, then
    what ``receive`` gives (the disconnect)."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def too_large(path: str, max_bytes: int) -> Response:
    """The 413 for a body over ``max_bytes`` sent to ``path`` (Anthropic's error shape
    under ``/v1/messages``, OpenAI's elsewhere)."""
    error = APIError(
        413,
        f"Request body too large: the limit is {max_bytes} bytes.",
        code="request_too_large",
        headers={"Connection": "close"},
    )
    if path.startswith("/v1/messages"):
        from starlette.responses import JSONResponse

        body = {"type": "error", "error": {"type": "request_too_large", "message": error.message}}
        return JSONResponse(body, 413, error.all_headers())
    return error.response()


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
        try:
            body = await read_body(receive, declared, self.max_bytes)
        except TooLarge:
            await too_large(str(scope.get("path", "")), self.max_bytes)(scope, receive, send)
            return
        if body is None:
            return  # gone before its body arrived: nobody to answer
        await self.app(scope, replaying(body, receive), send)
