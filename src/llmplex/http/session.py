"""The HTTP session every provider uses: aiohttp underneath, llmplex errors on top.

:class:`Session` owns one ``aiohttp.ClientSession`` for one provider call. It adds the
proxy (``http://``/``https://`` natively, ``socks4://``/``socks5://`` through
``aiohttp-socks``), cookies, default headers and timeouts, and it translates every
transport failure into the llmplex error tree with the provider's name:

- refused/unreachable host or proxy, connection lost mid-body -> ProviderConnectionError
- connect or read timeout                                      -> ProviderTimeoutError
- HTTP status >= 400 (via :func:`raise_for_status`)            -> by status

Streams are read with :meth:`Session.sse` and :meth:`Session.ndjson`, plain async
iterators (not generators, so there is nothing to finalise when the caller stops early).
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import json
from collections import deque
from collections.abc import Mapping
from contextlib import asynccontextmanager, contextmanager
from typing import Any, AsyncIterator, Iterator
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from ..errors import (
    InvalidRequestError,
    LLMplexError,
    ProviderConnectionError,
    ProviderTimeoutError,
    ResponseError,
)
from .ndjson import MalformedLineError, NDJSONDecoder
from .pool import ConnectionPool, current_connector
from .sse import ServerSentEvent, SSEDecoder, loads
from .status import raise_for_status

__all__ = ["Session", "EventStream", "ServerSentEvent", "redact_url", "DEFAULT_TIMEOUT",
           "ConnectionPool", "json_object"]  # ConnectionPool: re-exported from .pool

DEFAULT_TIMEOUT = 120.0
_SOCKS_SCHEMES = ("socks4", "socks4a", "socks5", "socks5h")


def json_object(text: str, provider: str, what: str = "stream event") -> dict[str, Any]:
    """``text`` parsed as a JSON object; anything else is a :class:`ResponseError` quoting
    the start of it (for the events of a stream, the bodies of a flow)."""
    try:
        data = loads(text)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise ResponseError(f"malformed {what}: {text[:200]!r}", provider=provider)
    return data


def redact_url(url: str | None) -> str:
    """``url`` with any password replaced by ``***`` (safe for messages and logs)."""
    if not url:
        return ""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid url>"
    if parts.password is None and parts.username is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    netloc = f"{user}:***@{host}" if parts.password is not None else f"{user}@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class Session:
    """An aiohttp session bound to one provider, proxy and timeout.

    Use it as ``async with Session("AllenAI", proxy=..., timeout=...) as s:``; leaving the
    block closes every connection, also on errors and cancellation.

    ``timeout`` bounds connecting and each wait for more bytes (not the whole answer, so
    long streams are fine while a stalled one fails).
    """

    def __init__(
        self,
        provider: str,
        *,
        proxy: str | None = None,
        headers: Mapping[str, str] | None = None,
        cookies: Mapping[str, str] | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> None:
        self.provider = provider
        self.proxy = proxy or None
        self._headers = dict(headers) if headers else {}
        self._cookies = dict(cookies) if cookies else None
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._request_proxy: str | None = None
        self._pooled = False

    def __repr__(self) -> str:
        return f"Session(provider={self.provider!r}, proxy={redact_url(self.proxy)!r})"

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Session:
        connector = self._connector()
        owner = True
        if connector is None:  # no SOCKS proxy: a client's connection pool may serve
            shared = current_connector()
            if shared is not None:
                connector, owner = shared, False
        self._pooled = not owner
        if self._timeout is None:
            timeout = aiohttp.ClientTimeout(total=None)
        else:
            timeout = aiohttp.ClientTimeout(
                total=None, connect=self._timeout, sock_read=self._timeout
            )
        self._session = aiohttp.ClientSession(
            connector=connector,
            connector_owner=owner,
            headers=self._headers,
            cookies=self._cookies,
            timeout=timeout,
            # Cookies set by 127.0.0.1 emulators must be kept too (H2o's hf-chat session).
            cookie_jar=aiohttp.CookieJar(unsafe=True),
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    @property
    def cookie_jar(self) -> aiohttp.abc.AbstractCookieJar:
        assert self._session is not None, "Session used outside 'async with'"
        return self._session.cookie_jar

    def _connector(self) -> aiohttp.BaseConnector | None:
        if not self.proxy:
            return None
        try:
            scheme = urlsplit(self.proxy).scheme.lower()
        except ValueError:
            scheme = ""
        if scheme in ("http", "https"):
            self._request_proxy = self.proxy
            return None
        if scheme in _SOCKS_SCHEMES:
            try:
                from aiohttp_socks import ProxyConnector
            except ImportError:  # pragma: no cover - depends on the install
                raise InvalidRequestError(
                    "SOCKS proxies need the 'aiohttp-socks' package: pip install 'llmplex[socks]'",
                    provider=self.provider,
                ) from None
            try:
                return ProxyConnector.from_url(self.proxy, rdns=scheme in ("socks5h", "socks4a"))
            except ValueError as exc:
                raise InvalidRequestError(
                    f"invalid proxy URL {redact_url(self.proxy)!r}: {exc}", provider=self.provider
                ) from None
        raise InvalidRequestError(
            f"unsupported proxy {redact_url(self.proxy)!r}: use http://, https://, socks4:// "
            "or socks5://",
            provider=self.provider,
        )

    # -- requests --------------------------------------------------------------------------

    @asynccontextmanager
    async def request(
        self,
        method: str,
        url: str,
        *,
        check: bool = True,
        messages: Mapping[int, str] | None = None,
        explain: Mapping[int, str] | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Send a request; yield the response with its status checked (unless ``check``
        is false). In a status error, ``messages[status]`` replaces the server's text and
        ``explain[status]`` stands in when the server's body says nothing."""
        assert self._session is not None, "Session used outside 'async with'"
        if self._request_proxy:
            kwargs.setdefault("proxy", self._request_proxy)
        with self.translating(url):
            response = await self._session.request(method, url, **kwargs)
        try:
            if response.status == 407 and self.proxy:
                # Plain-http targets go to the proxy without CONNECT, so its refusal
                # arrives as an ordinary response: it is still the proxy that failed.
                raise ProviderConnectionError(
                    f"proxy {redact_url(self.proxy)} refused the credentials (HTTP 407)",
                    provider=self.provider, status=407,
                )
            if check:
                with self.translating(url):
                    await raise_for_status(
                        response, self.provider, (messages or {}).get(response.status),
                        explain=explain,
                    )
            yield response
        except BaseException:
            response.close()  # an error or an abandoned stream: no half-read socket lingers
            raise
        else:
            # The caller is done, maybe before the last bytes (a stream's end marker comes
            # before the chunked terminator): take what is already on its way, briefly,
            # so a pooled connection can be reused; else close it.
            if not response.content.at_eof() and self._pooled:
                try:
                    async with asyncio.timeout(0.05):
                        while await response.content.readany():
                            pass
                except Exception:  # a timeout, a broken connection: just close it
                    pass
            if response.content.at_eof():
                response.release()
            else:
                response.close()

    async def json(self, method: str, url: str, **kwargs: Any) -> Any:
        """Send a request and return its JSON body (status checked)."""
        async with self.request(method, url, **kwargs) as response:
            return await self.read_json(response)

    async def read_json(self, response: aiohttp.ClientResponse) -> Any:
        """The JSON body of ``response``; a non-JSON body is a ResponseError."""
        with self.translating(str(response.url)):
            raw = await response.read()
        try:
            return json.loads(raw)
        except ValueError:
            raise ResponseError(
                f"invalid JSON from {response.url.path}: {raw[:200].decode('utf-8', 'replace')!r}",
                provider=self.provider,
                status=response.status,
            ) from None

    def sse(self, response: aiohttp.ClientResponse) -> EventStream:
        """Iterate the Server-Sent Events of ``response``."""
        return EventStream(self, response, SSEDecoder())

    def ndjson(self, response: aiohttp.ClientResponse) -> EventStream:
        """Iterate the JSON values of a newline-delimited JSON ``response``."""
        return EventStream(self, response, NDJSONDecoder())

    # -- error translation -----------------------------------------------------------------

    @contextmanager
    def translating(self, url: str | None = None) -> Iterator[None]:
        """Re-raise transport exceptions from the block as llmplex errors."""
        try:
            yield
        except Exception as exc:
            mapped = self.translate(exc, url)
            if mapped is exc:
                raise
            raise mapped from exc

    def translate(self, exc: BaseException, url: str | None = None) -> BaseException:
        """The llmplex error for a transport exception (others are returned unchanged)."""
        if isinstance(exc, LLMplexError):
            return exc
        where = _origin(url)
        via = f" via proxy {redact_url(self.proxy)}" if self.proxy else ""
        socks = _socks_errors()
        if isinstance(exc, socks[2]):
            return ProviderTimeoutError(
                f"timed out connecting to proxy {redact_url(self.proxy)}", provider=self.provider
            )
        if isinstance(exc, socks[:2]) or isinstance(exc, aiohttp.ClientProxyConnectionError):
            return ProviderConnectionError(
                f"cannot connect to {where} through proxy {redact_url(self.proxy)}: "
                f"{_reason(exc)}",
                provider=self.provider,
            )
        if isinstance(exc, aiohttp.ClientHttpProxyError):
            return ProviderConnectionError(
                f"proxy {redact_url(self.proxy)} refused the connection to {where}: "
                f"HTTP {exc.status} {exc.message}",
                provider=self.provider,
            )
        if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
            kind = (
                "connecting to"
                if isinstance(exc, getattr(aiohttp, "ConnectionTimeoutError", ()))
                else "waiting for"
            )
            return ProviderTimeoutError(
                f"timed out {kind} {where}{via} (timeout {self._timeout}s)", provider=self.provider
            )
        if isinstance(exc, aiohttp.ClientConnectorError):
            return ProviderConnectionError(
                f"cannot connect to {where}{via}: {_reason(exc)}", provider=self.provider
            )
        if isinstance(
            exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, ConnectionError)
        ) or isinstance(exc, aiohttp.ClientOSError):
            return ProviderConnectionError(
                f"connection to {where}{via} lost before the response was complete",
                provider=self.provider,
            )
        if isinstance(exc, EOFError):  # asyncio.IncompleteReadError: e.g. a SOCKS handshake
            return ProviderConnectionError(
                f"connection to {where}{via} closed unexpectedly"
                + (" (did the proxy refuse the credentials?)" if self.proxy else ""),
                provider=self.provider,
            )
        if isinstance(exc, aiohttp.InvalidURL):
            return InvalidRequestError(f"invalid URL {exc}", provider=self.provider)
        if isinstance(exc, aiohttp.ClientResponseError):
            return ResponseError(f"bad response from {where}: {exc.message}", provider=self.provider,
                                 status=exc.status or None)
        if isinstance(exc, aiohttp.ClientError):
            return ProviderConnectionError(f"request to {where}{via} failed: {exc}", provider=self.provider)
        if isinstance(exc, MalformedLineError):
            return ResponseError(str(exc), provider=self.provider)
        return exc


class EventStream:
    """Async iterator over decoded events of one response (SSE events or JSON values).

    Transport failures while reading are raised as llmplex errors; a malformed JSON line
    is a ResponseError. It owns nothing: the response is closed by its ``request`` block.

    A stream that stalls fails after the session's ``timeout`` without a byte, as every
    read does; the stream keeps that watch itself. aiohttp's own read timeout re-arms a
    timer on every read from the socket, which for a stream of small chunks costs as much
    as decoding them; here one timer fires when a wait for bytes has lasted ``timeout``,
    and is re-armed at most once per ``timeout``. (Where aiohttp offers no way to take the
    watch over, its own timeout stays in charge.)
    """

    __slots__ = ("_session", "_response", "_decoder", "_pending", "_done", "_timeout",
                 "_timer", "_waiting_since", "_loop")

    def __init__(self, session: Session, response: aiohttp.ClientResponse, decoder: Any) -> None:
        self._session = session
        self._response = response
        self._decoder = decoder
        self._pending: deque[Any] = deque()
        self._done = False
        self._timer: asyncio.TimerHandle | None = None
        self._waiting_since: float | None = None  # loop time a read began waiting, if any
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timeout = _take_read_timeout(response)

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Any:
        pending = self._pending
        while not pending:
            if self._done:
                raise StopAsyncIteration
            try:
                if self._timeout is None:
                    chunk = await self._response.content.readany()
                else:
                    loop = self._loop
                    if loop is None:
                        loop = self._loop = asyncio.get_running_loop()
                    self._waiting_since = now = loop.time()
                    if self._timer is None:
                        self._timer = loop.call_at(now + self._timeout, self._check_stall)
                    try:
                        chunk = await self._response.content.readany()
                    finally:
                        self._waiting_since = None
                if chunk:
                    pending.extend(self._decoder.feed(chunk))
                else:
                    self._finish()
                    pending.extend(self._decoder.close())
            except Exception as exc:
                self._finish()
                mapped = self._session.translate(exc, str(self._response.url))
                if mapped is exc:
                    raise
                raise mapped from exc
            except BaseException:  # cancelled: the caller is leaving, stop watching
                self._cancel_timer()
                raise
        return pending.popleft()

    def _finish(self) -> None:
        self._done = True
        self._cancel_timer()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check_stall(self) -> None:
        """The watch's timer: fail the waiting read if it has waited ``timeout``."""
        self._timer = None
        since = self._waiting_since
        if since is None or self._done or self._loop is None or self._timeout is None:
            return  # not waiting now: the next wait arms the timer again
        left = since + self._timeout - self._loop.time()
        if left > 0:
            self._timer = self._loop.call_later(left, self._check_stall)
            return
        # What aiohttp's own read timeout does: the waiting read raises, the connection
        # is marked for closing (the request block closes it).
        exc = _SocketTimeoutError("Timeout on reading data from socket")
        connection = self._response.connection
        protocol = getattr(connection, "protocol", None) if connection is not None else None
        if protocol is not None:
            protocol.set_exception(exc)
        self._response.content.set_exception(exc)


_SocketTimeoutError = getattr(aiohttp, "SocketTimeoutError", aiohttp.ServerTimeoutError)


def _take_read_timeout(response: aiohttp.ClientResponse) -> float | None:
    """Take the per-read timeout over from aiohttp for ``response``'s connection: the
    timeout in seconds (the caller watches from now on), or None (no timeout, or aiohttp
    keeps watching). Set again by aiohttp for the connection's next request."""
    connection = response.connection
    protocol = getattr(connection, "protocol", None) if connection is not None else None
    timeout = getattr(protocol, "read_timeout", None)
    if not timeout:
        return None
    try:
        protocol.read_timeout = None  # type: ignore[union-attr]
    except AttributeError:  # read-only here: aiohttp's timer stays in charge
        return None
    return timeout


@functools.lru_cache(maxsize=1)
def _socks_errors() -> tuple[Any, ...]:
    """(connection errors, other proxy errors, timeout errors) of aiohttp-socks, if installed.

    aiohttp-socks and python-socks each define their own classes; both are raised."""
    conn: list[type] = []
    other: list[type] = []
    timeout: list[type] = []
    for module in ("aiohttp_socks", "python_socks"):
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        conn.append(mod.ProxyConnectionError)
        other.append(mod.ProxyError)
        timeout.append(mod.ProxyTimeoutError)
    return tuple(conn), tuple(other), tuple(timeout)


def _origin(url: str | None) -> str:
    if not url:
        return "the service"
    try:
        parts = urlsplit(str(url))
    except ValueError:
        return "the service"
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


def _reason(exc: BaseException) -> str:
    os_error = getattr(exc, "os_error", None)
    if os_error is not None and getattr(os_error, "strerror", None):
        return os_error.strerror
    text = str(exc)
    return text or type(exc).__name__

