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

Secrets. The Session knows every secret its requests carry (see :class:`Secrets`): the
credential of ``Authorization``-like headers (any scheme) and of other credential headers
(``x-api-key``, ``api-key``...), cookie values (given, and those the server set in the
jar), proxy and URL credentials (``user:pass@``), credential query parameters. Every
llmplex error that passes through it — raised by ``translate``/``raise_for_status``, by
a ``request`` block, or by the provider's code anywhere inside ``async with Session(...)``
(a StreamError built from an event body) — has them replaced by ``***`` in its message,
``body``, ``args`` (so ``str`` and ``repr``) and other text attributes, whoever's protocol it
is, when an upstream echoes a request back.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import importlib
import json
import re
import weakref
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlsplit, urlunsplit

import aiohttp
from multidict import CIMultiDict

from ..errors import (
    AllProvidersFailed,
    InvalidRequestError,
    LLMplexError,
    ProviderConnectionError,
    ProviderTimeoutError,
    ResponseError,
)
from .ndjson import MalformedLineError, NDJSONDecoder
from .pool import (
    ConnectionPool,
    ConnectProbe,
    connect_probe,
    current_connector,
    new_connector,
)
from .sse import ServerSentEvent, SSEDecoder, loads
from .status import raise_for_status

__all__ = [
    "DEFAULT_TIMEOUT",
    "MAX_BODY_BYTES",
    "MIN_SECRET_LENGTH",
    "ConnectionPool",
    "EventStream",
    "Secrets",
    "ServerSentEvent",
    "Session",
    "json_object",
    "redact_url",
]
# ConnectionPool: re-exported from .pool

DEFAULT_TIMEOUT = 120.0
#: the largest JSON body read from an upstream (a whole answer, a prediction...)
MAX_BODY_BYTES = 16 * 1024 * 1024
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


#: A secret value shorter than this is not replaced wherever it occurs (a cookie ``"1"`` or
#: a key ``"abc"`` would mangle unrelated text, and such a value is guessable anyway); it
#: is still replaced, whatever its length, in the form it was sent in: ``Bearer abc`` ->
#: ``Bearer ***``, ``sid=1`` -> ``sid=***``, ``user:pw`` -> ``user:***``. A value of a
#: header sent bare (``x-api-key: abc``) has no such form: keys that short are not kept out.
MIN_SECRET_LENGTH = 6

#: Names of headers and query parameters whose values are credentials (the whole value is
#: secret; for ``*auth*`` headers, what follows the scheme: ``Bearer <token>``). Cookies
#: are all secret.
_SECRET_NAME = re.compile(
    r"auth|key|token|secret|passw|cookie|session|credential|signature", re.IGNORECASE
)
_MAX_RECORDED = 256  # per-request headers/URLs a Session remembers the secrets of
_MIN_PARTIAL = 4  # the shortest start of a secret scrubbed at the end of a cut text


class Secrets:
    """Secret values, and their removal from text and errors (``***`` in their place).

    Each value is replaced as sent and as an echo would quote it (JSON-escaped,
    percent-encoded). The rule for short values: see :data:`MIN_SECRET_LENGTH`. ``repr``
    shows only how many there are.
    """

    __slots__ = ("_needles", "_ordered")

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._needles: dict[str, str] = {}
        self._ordered: list[tuple[str, str]] | None = None
        for value in values:
            self.add(value)

    def __bool__(self) -> bool:
        return bool(self._needles)

    def __len__(self) -> int:
        return len(self._needles)

    def __repr__(self) -> str:
        return f"<Secrets: {len(self._needles)} forms>"

    # -- collecting ------------------------------------------------------------------------

    def add(self, value: str, context: str = "") -> None:
        """``value`` is secret. ``context`` is what it was sent right after (``"Bearer "``,
        ``"sid="``, ``"user:"``): a value too short to replace alone is replaced there."""
        value = str(value).strip() if value is not None else ""
        if not value:
            return
        self._ordered = None
        if len(value) >= MIN_SECRET_LENGTH:
            for form in _forms(value):
                self._needles[form] = "***"
        elif context:
            for form in _forms(value):
                self._needles[context + form] = context + "***"

    def add_header(self, name: str, value: str) -> None:
        """A request header: its credential, if the header carries one."""
        lname = str(name).lower()
        value = str(value).strip()
        if lname == "cookie":
            self.add_cookie_header(value)
        elif _SECRET_NAME.search(lname):
            scheme, _, credential = value.partition(" ")
            credential = credential.strip()
            if "auth" in lname and credential and scheme.isalnum():  # "Bearer x", "Basic x"
                self.add(credential, scheme + " ")
                if scheme.lower() == "basic":
                    self._add_basic(credential)
            else:
                self.add(value)

    def add_headers(self, headers: Any) -> None:
        items = headers.items() if hasattr(headers, "items") else headers
        for name, value in items:
            self.add_header(name, value)

    def add_cookie_header(self, value: str) -> None:
        for part in value.split(";"):
            name, _, cookie = part.strip().partition("=")
            self.add(cookie, name + "=")

    def add_cookies(self, cookies: Any) -> None:
        """A cookie mapping (values may be ``Morsel``s) or an aiohttp cookie jar."""
        items = (
            cookies.items()
            if hasattr(cookies, "items")
            else ((morsel.key, morsel) for morsel in cookies)
        )
        for name, value in items:
            self.add(getattr(value, "value", value), f"{name}=")

    def add_url(self, url: Any) -> None:
        """A URL's ``user:password@`` and credential query parameters."""
        try:
            parts = urlsplit(str(url))
            password = parts.password
            username = parts.username or ""
        except ValueError:
            return
        if password is not None:
            self.add_userinfo(unquote(username), unquote(password))
            if password != unquote(password):
                self.add(password, username + ":")
        if parts.query:
            self.add_params(parse_qsl(parts.query, keep_blank_values=False))

    def add_userinfo(self, user: str, password: str) -> None:
        """Credentials ``user:password`` (a proxy's, Basic auth): the password, and the
        ``Basic`` token they make (what a proxy is sent in ``Proxy-Authorization``)."""
        self.add(password, f"{user}:")
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        self.add(token, "Basic ")

    def add_params(self, params: Any) -> None:
        """Query parameters (a mapping or pairs): those named like credentials."""
        items = params.items() if hasattr(params, "items") else params
        try:
            for name, value in items:
                if _SECRET_NAME.search(str(name)):
                    self.add(str(value), f"{name}=")
        except (TypeError, ValueError):  # not pairs: nothing we can read
            return

    def add_auth(self, auth: Any) -> None:
        """An ``aiohttp.BasicAuth`` (``auth=``/``proxy_auth=``)."""
        login, password = getattr(auth, "login", None), getattr(auth, "password", None)
        if password:
            self.add_userinfo(str(login or ""), str(password))

    def _add_basic(self, credential: str) -> None:
        try:
            decoded = base64.b64decode(credential, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            return
        user, sep, password = decoded.partition(":")
        if sep:
            self.add(password, f"{user}:")

    # -- scrubbing -------------------------------------------------------------------------

    def scrub(self, text: str) -> str:
        """``text`` with every secret replaced by ``***`` — also the start of one that
        ``text`` ends with (at least :data:`_MIN_PARTIAL` characters of it): error bodies
        and messages are cut to a length, maybe in the middle of an echoed secret."""
        if not text or not self._needles:
            return text
        ordered = self._ordered
        if ordered is None:  # longest first: "user:pass" before "pass"
            ordered = self._ordered = sorted(self._needles.items(), key=lambda kv: -len(kv[0]))
        for needle, replacement in ordered:
            if needle in text:
                text = text.replace(needle, replacement)
        for needle, replacement in ordered:
            if replacement == "***":  # a whole value (a short one's context is no secret)
                for size in range(min(len(needle), len(text)) - 1, _MIN_PARTIAL - 1, -1):
                    if text.endswith(needle[:size]):
                        return text[:-size] + "***"
        return text

    def scrub_error(self, exc: BaseException) -> BaseException:
        """Scrub ``exc`` in place, and the llmplex errors it carries (its cause and context,
        the errors of an AllProvidersFailed or an exception group): their message, body,
        args and other text attributes. Another library's exception linked as a cause or
        context (aiohttp's, whose text may quote a proxy URL with its password) is not
        changed: where its text shows a secret, the link is replaced by a
        :class:`ScrubbedError` saying the same without it."""
        if not self._needles:
            return exc
        for error in _carried(exc):  # (it follows the links after they are replaced)
            if isinstance(error, LLMplexError):
                self._scrub_one(error)
            for link in ("__cause__", "__context__"):
                linked = getattr(error, link)
                if linked is not None and not isinstance(linked, LLMplexError):
                    clean = self._stand_in(linked)
                    if clean is not linked:
                        setattr(error, link, clean)
        return exc

    def _stand_in(self, error: BaseException) -> BaseException:
        """``error``, or a :class:`ScrubbedError` in its place if its text shows a secret."""
        if isinstance(error, ScrubbedError):
            return error
        name = f"{type(error).__module__}.{type(error).__qualname__}"
        try:
            text = f"{name}: {error}"
            shown = f"{text} {error!r}"
        except Exception:  # a broken __str__/__repr__ must not hide the error scrubbed
            text = shown = f"{name}: <unprintable>"
        if self.scrub(shown) == shown:
            return error
        clean = ScrubbedError(self.scrub(text))
        clean.__cause__ = error.__cause__
        clean.__context__ = error.__context__
        clean.__suppress_context__ = error.__suppress_context__
        clean.__traceback__ = error.__traceback__  # where it was raised (code, not values)
        return clean

    def _scrub_one(self, error: LLMplexError) -> None:
        scrub = self.scrub
        for name, value in vars(error).items():
            if isinstance(value, str):
                cleaned = scrub(value)
                if cleaned != value:
                    setattr(error, name, cleaned)
            elif isinstance(value, list) and any(isinstance(v, str) for v in value):
                setattr(error, name, [scrub(v) if isinstance(v, str) else v for v in value])
        error.args = tuple(scrub(a) if isinstance(a, str) else a for a in error.args)
        notes = getattr(error, "__notes__", None)
        if isinstance(notes, list):
            notes[:] = [scrub(n) if isinstance(n, str) else n for n in notes]


class ScrubbedError(Exception):
    """Stands, in an error's cause or context, for another library's exception whose text
    showed a secret: its type's name and its message, with the secrets replaced by
    ``***`` (see :meth:`Secrets.scrub_error`)."""


def _carried(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception it carries: its cause and context, the members of an
    exception group and the errors of an AllProvidersFailed, each once."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        error = todo.pop()
        if error is None or id(error) in seen:
            continue
        seen.add(id(error))
        yield error
        if isinstance(error, AllProvidersFailed):
            todo.extend(e for _, e in error.errors if isinstance(e, BaseException))
        if isinstance(error, BaseExceptionGroup):
            todo.extend(error.exceptions)
        todo.append(error.__cause__)
        todo.append(error.__context__)


def _carries_llmplex_error(exc: BaseException) -> bool:
    """Whether ``exc`` is, or carries (cause, context, group), an llmplex error."""
    return any(isinstance(error, LLMplexError) for error in _carried(exc))


def _forms(value: str) -> set[str]:
    """``value`` as sent, and as an echo would quote it."""
    forms = {
        value,
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        quote(value, safe=""),
        quote_plus(value, safe=""),
    }
    forms.discard("")
    return forms


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
        stateless: bool = False,
    ) -> None:
        """``stateless``: the calls keep no cookies (the upstream's are not needed from
        one request to the next, as for OpenAI-compatible APIs). Inside a connection
        pool such a session then borrows the pool's one long-lived
        ``aiohttp.ClientSession`` (per connector, so per event loop; no cookie jar),
        sending its headers and timeout with each request, instead of building a
        ``ClientSession`` per call."""
        self.provider = provider
        self._stateless = stateless and not cookies
        self.proxy = proxy or None
        self._headers = dict(headers) if headers else {}
        self._cookies = dict(cookies) if cookies else None
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._request_proxy: str | None = None
        self._pooled = False
        self._sent: list[tuple[str, Any]] = []  # per-request headers, URLs... (their secrets)
        # the pool's shared ClientSession is used: this session's timeout and headers
        self._borrowed: tuple[aiohttp.ClientTimeout, dict[str, str]] | None = None

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
            else:  # its own, which tells reused connections apart (see .pool)
                connector = new_connector()
        self._pooled = not owner
        timeout = _client_timeout(self._timeout)
        if self._stateless and self._pooled:
            self._session = _shared_session(connector)
            self._borrowed = (timeout, self._headers)
            return self
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

    async def __aexit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        try:
            if exc is not None:
                self.scrub(exc)  # whatever the provider raised inside the block
        finally:
            await self.close()

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            if self._borrowed is None:  # (a borrowed one stays with its connector)
                await session.close()

    # -- secrets ---------------------------------------------------------------------------

    def secrets(self) -> Secrets:
        """The secrets this session's requests carried so far (see :class:`Secrets`)."""
        found = Secrets()
        found.add_headers(self._headers)
        if self._cookies:
            found.add_cookies(self._cookies)
        if self.proxy:
            found.add_url(self.proxy)
        if self._session is not None:
            found.add_cookies(self._session.cookie_jar)  # also the ones the server set
        for kind, item in self._sent:
            if kind == "headers":
                found.add_headers(item)
            elif kind == "url":
                found.add_url(item)
            elif kind == "params":
                found.add_params(item)
            elif kind == "cookies":
                found.add_cookies(item)
            elif kind == "auth":
                found.add_auth(item)
        return found

    def scrub(self, exc: BaseException) -> BaseException:
        """Remove this session's secrets from ``exc`` (in place) and return it."""
        if _carries_llmplex_error(exc):  # else nothing to scrub: spare building the secrets
            self.secrets().scrub_error(exc)
        return exc

    def _remember(self, url: Any, kwargs: Mapping[str, Any]) -> None:
        """Note the secrets one request carries beyond the session's own."""
        sent = self._sent
        if len(sent) >= _MAX_RECORDED:
            return
        text = url if isinstance(url, str) else str(url)
        if "@" in text or "?" in text:
            sent.append(("url", text))
        if not kwargs:
            return
        headers = kwargs.get("headers")
        if headers:
            names = headers.keys() if hasattr(headers, "keys") else (k for k, _ in headers)
            if any(_SECRET_NAME.search(str(name)) for name in names):
                sent.append(("headers", headers))
        for kind, key in (
            ("params", "params"),
            ("cookies", "cookies"),
            ("auth", "auth"),
            ("auth", "proxy_auth"),
            ("url", "proxy"),
        ):
            item = kwargs.get(key)
            if item and not (key == "proxy" and item is self._request_proxy):
                sent.append((kind, item))

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

    def request(
        self,
        method: str,
        url: str,
        *,
        check: bool = True,
        messages: Mapping[int, str] | None = None,
        explain: Mapping[int, str] | None = None,
        **kwargs: Any,
    ) -> _Request:
        """``async with session.request(...) as response:`` sends a request and gives the
        response with its status checked (unless ``check`` is false). In a status error,
        ``messages[status]`` replaces the server's text and ``explain[status]`` stands in
        when the server's body says nothing."""
        return _Request(self, method, url, check, messages, explain, kwargs)

    async def _send(
        self, method: str, url: str, kwargs: dict[str, Any]
    ) -> tuple[aiohttp.ClientResponse, Any]:
        """``ClientSession.request``, sent once more on a new connection when it failed on
        a reused one before any byte of the answer arrived (the peer had closed it).
        Returns the response and its connection's protocol (None if unknown): a small
        answer read whole is handed back to the pool before the caller sees it."""
        assert self._session is not None
        if self._borrowed is not None:  # what a ClientSession of its own would add
            timeout, defaults = self._borrowed
            kwargs.setdefault("timeout", timeout)
            headers = kwargs.get("headers")
            # (aiohttp makes its own CIMultiDict of a plain dict: the session's headers
            # are never changed by a request)
            kwargs["headers"] = _merged(CIMultiDict(defaults), headers) if headers else defaults
        probe = ConnectProbe()
        token = connect_probe.set(probe)
        try:
            try:
                response = await self._session.request(method, url, **kwargs)
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
                if (
                    not probe.reused
                    or isinstance(exc, aiohttp.ClientConnectorError)
                    or not _replayable(kwargs)
                ):
                    raise
                probe.fresh = True
                response = await self._session.request(method, url, **kwargs)
        finally:
            connect_probe.reset(token)
        protocol = probe.protocol
        if protocol is None and response.connection is not None:  # a connector of others
            protocol = response.connection.protocol
        return response, protocol

    async def json(
        self, method: str, url: str, *, limit: int = MAX_BODY_BYTES, **kwargs: Any
    ) -> Any:
        """Send a request and return its JSON body (status checked; ``limit`` as in
        :meth:`read_json`)."""
        async with self.request(method, url, **kwargs) as response:
            return await self.read_json(response, limit=limit)

    async def read_json(
        self, response: aiohttp.ClientResponse, *, limit: int = MAX_BODY_BYTES
    ) -> Any:
        """The JSON body of ``response``; a non-JSON body, or one larger than ``limit``
        bytes (:data:`MAX_BODY_BYTES` by default), is a ResponseError (read no further
        than that)."""
        if (response.content_length or 0) > limit:
            raise self.scrub(
                ResponseError(
                    f"answer too large: {response.content_length} bytes (the limit is {limit})",
                    provider=self.provider,
                    status=response.status,
                )
            )
        parts: list[bytes] = []
        size = 0
        with self.translating(str(response.url)):
            async for part in response.content.iter_any():
                size += len(part)
                if size > limit:
                    raise self.scrub(
                        ResponseError(
                            f"answer too large: over {limit} bytes",
                            provider=self.provider,
                            status=response.status,
                        )
                    )
                parts.append(part)
        raw = b"".join(parts)
        try:
            return json.loads(raw)
        except ValueError:
            raise self.scrub(
                ResponseError(
                    f"invalid JSON from {response.url.path}: "
                    f"{raw[:200].decode('utf-8', 'replace')!r}",
                    provider=self.provider,
                    status=response.status,
                )
            ) from None

    def sse(self, response: aiohttp.ClientResponse) -> EventStream:
        """Iterate the Server-Sent Events of ``response``."""
        return EventStream(self, response, SSEDecoder())

    def ndjson(self, response: aiohttp.ClientResponse) -> EventStream:
        """Iterate the JSON values of a newline-delimited JSON ``response``."""
        return EventStream(self, response, NDJSONDecoder())

    # -- error translation -----------------------------------------------------------------

    def translating(self, url: str | None = None) -> _Translating:
        """``with session.translating(url):`` re-raises transport exceptions from the block
        as llmplex errors."""
        return _Translating(self, url)

    def translate(self, exc: BaseException, url: str | None = None) -> BaseException:
        """The llmplex error for a transport exception (others are returned unchanged),
        without this session's secrets."""
        mapped = self._translate(exc, url)
        if isinstance(mapped, LLMplexError):
            self.scrub(mapped)
        return mapped

    def _translate(self, exc: BaseException, url: str | None = None) -> BaseException:
        if isinstance(exc, LLMplexError):
            return exc
        if (
            type(exc) is ValueError
            and url
            and "@" in url
            and urlsplit(url).username
            and any(name.lower() == "authorization" for name in self._headers)
        ):
            # aiohttp sends a URL's user:password as Basic auth, and refuses to when the
            # request has an Authorization header of its own (an API key)
            return InvalidRequestError(
                f"{redact_url(url)} carries credentials (user:password@) and the request "
                "sends an Authorization header too (an API key): give only one of them",
                provider=self.provider,
                param="base_url",
            )
        where = _origin(url)
        via = f" via proxy {redact_url(self.proxy)}" if self.proxy else ""
        socks = _socks_errors()
        if isinstance(exc, socks[2]):
            return ProviderTimeoutError(
                f"timed out connecting to proxy {redact_url(self.proxy)}", provider=self.provider
            )
        if isinstance(exc, socks[:2]) or isinstance(exc, aiohttp.ClientProxyConnectionError):
            return ProviderConnectionError(
                f"cannot connect to {where} through proxy {redact_url(self.proxy)}: {_reason(exc)}",
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
            return ResponseError(
                f"bad response from {where}: {exc.message}",
                provider=self.provider,
                status=exc.status or None,
            )
        if isinstance(exc, aiohttp.ClientError):
            return ProviderConnectionError(
                f"request to {where}{via} failed: {exc}", provider=self.provider
            )
        if isinstance(exc, MalformedLineError):
            return ResponseError(str(exc), provider=self.provider)
        return exc


class _Translating:
    """See :meth:`Session.translating` (a plain class, not @contextmanager: it runs
    around every request)."""

    __slots__ = ("_session", "_url")

    def __init__(self, session: Session, url: str | None) -> None:
        self._session = session
        self._url = url

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, Exception):
            mapped = self._session.translate(exc, self._url)
            if mapped is not exc:
                raise mapped from exc


class _Request:
    """The block of one request (see :meth:`Session.request`): a plain class, not
    @asynccontextmanager, as one is made per upstream request."""

    __slots__ = (
        "_session",
        "_method",
        "_url",
        "_check",
        "_messages",
        "_explain",
        "_kwargs",
        "_response",
        "_protocol",
    )

    def __init__(
        self,
        session: Session,
        method: str,
        url: str,
        check: bool,
        messages: Mapping[int, str] | None,
        explain: Mapping[int, str] | None,
        kwargs: dict[str, Any],
    ) -> None:
        self._session = session
        self._method = method
        self._url = url
        self._check = check
        self._messages = messages
        self._explain = explain
        self._kwargs = kwargs
        self._response: aiohttp.ClientResponse | None = None
        self._protocol: Any = None

    async def __aenter__(self) -> aiohttp.ClientResponse:
        session = self._session
        url = self._url
        kwargs = self._kwargs
        assert session._session is not None, "Session used outside 'async with'"
        if session._request_proxy:
            kwargs.setdefault("proxy", session._request_proxy)
        session._remember(url, kwargs)
        try:
            response, protocol = await session._send(self._method, url, kwargs)
        except Exception as exc:
            mapped = session.translate(exc, url)
            if mapped is exc:
                raise
            raise mapped from exc
        self._response, self._protocol = response, protocol
        try:
            if response.status >= 400 and protocol is not None:
                # An error answer: its connection is not trusted with another request (an
                # upstream often closes it right after); marked before the body is read,
                # which may hand the connection back to the pool.
                protocol.force_close()
            if response.status == 407 and session.proxy:
                # Plain-http targets go to the proxy without CONNECT, so its refusal
                # arrives as an ordinary response: it is still the proxy that failed.
                raise ProviderConnectionError(
                    f"proxy {redact_url(session.proxy)} refused the credentials (HTTP 407)",
                    provider=session.provider,
                    status=407,
                )
            if self._check and response.status >= 400:
                with _Translating(session, url):
                    await raise_for_status(
                        response,
                        session.provider,
                        (self._messages or {}).get(response.status),
                        explain=self._explain,
                    )
        except BaseException as exc:
            self._failed(exc)
            raise
        return response

    def _failed(self, exc: BaseException) -> None:
        if isinstance(exc, Exception):
            # The caller's code failed on this answer (a stream's error event...): the
            # connection may already be back in the pool (read to its end) — mark it
            # so that it is not handed out again.
            if self._protocol is not None:
                self._protocol.force_close()
            self._session.scrub(exc)
        assert self._response is not None
        self._response.close()  # an error or an abandoned stream: no half-read socket lingers

    async def __aexit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if exc is not None:
            self._failed(exc)
            return  # (the exception goes on)
        response = self._response
        assert response is not None
        # The caller is done, maybe before the last bytes (a stream's end marker comes
        # before the chunked terminator): take what is already on its way, briefly,
        # so a pooled connection can be reused; else close it.
        if not response.content.at_eof() and self._session._pooled:
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

    __slots__ = (
        "_decoder",
        "_done",
        "_loop",
        "_pending",
        "_response",
        "_session",
        "_timeout",
        "_timer",
        "_waiting_since",
    )

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


#: the long-lived ClientSession of each pool connector (stateless sessions borrow it)
_SHARED: weakref.WeakKeyDictionary[aiohttp.BaseConnector, aiohttp.ClientSession] = (
    weakref.WeakKeyDictionary()
)


def _shared_session(connector: aiohttp.BaseConnector) -> aiohttp.ClientSession:
    """The connector's shared ``ClientSession``: no cookie jar, no default headers, no
    timeout of its own (each request brings them); closed with its connector (an
    ``aiohttp.ClientSession`` that does not own its connector holds nothing else)."""
    session = _SHARED.get(connector)
    if session is None or session.closed:
        session = aiohttp.ClientSession(
            connector=connector,
            connector_owner=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=None),
        )
        _SHARED[connector] = session
    return session


@functools.lru_cache(maxsize=16)
def _client_timeout(seconds: float | None) -> aiohttp.ClientTimeout:
    """The aiohttp timeouts of a Session's ``timeout`` (immutable, so shared: a session is
    made per provider call)."""
    if seconds is None:
        return aiohttp.ClientTimeout(total=None)
    return aiohttp.ClientTimeout(total=None, connect=seconds, sock_read=seconds)


def _merged(defaults: CIMultiDict[str], headers: Any) -> CIMultiDict[str]:
    """The session's headers with a request's on top, as ``aiohttp.ClientSession`` merges
    its default headers: a request's header replaces the session's of that name, and a
    name the request repeats keeps every value."""
    result = defaults.copy()
    if headers:
        added: set[str] = set()
        items = headers.items() if hasattr(headers, "items") else headers
        for key, value in items:
            if key in added:
                result.add(key, value)
            else:
                result[key] = value
                added.add(key)
    return result


def _replayable(kwargs: Mapping[str, Any]) -> bool:
    """Whether the request's body can be sent again as it was (not a stream or a file)."""
    data = kwargs.get("data")
    return data is None or isinstance(
        data, (bytes, bytearray, str, dict, list, tuple, aiohttp.FormData)
    )


def _take_read_timeout(response: aiohttp.ClientResponse) -> float | None:
    """Take the per-read timeout over from aiohttp for ``response``'s connection: the
    timeout in seconds (the caller watches from now on), or None (no timeout, or aiohttp
    keeps watching). Set again by aiohttp for the connection's next request."""
    connection = response.connection
    protocol = getattr(connection, "protocol", None) if connection is not None else None
    timeout: float | None = getattr(protocol, "read_timeout", None)
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
        return str(os_error.strerror)
    text = str(exc)
    return text or type(exc).__name__
