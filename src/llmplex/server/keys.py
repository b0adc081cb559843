"""The server's API keys: who may call, which models, how much (``[server.keys.NAME]``).

.. code-block:: toml

    [server.keys.team-a]          # the table name is the key's name
    key = "sk-..."                # or key_sha256 = "<hex>": only a hash in the file
    rpm = 60                      # requests per minute (optional)
    tpm = 200000                  # tokens per minute (optional)
    models = ["openai:*", "groq:llama-3.1-8b-instant"]   # allowed (optional)

A route calls :meth:`KeyRing.admit` once with the request's headers and model: it checks
the key (401 ``invalid_api_key``), the model (403 ``model_not_allowed``, naming the model,
never the key), then the limits (429 ``rate_limit_exceeded`` with ``Retry-After`` and
OpenAI's ``x-ratelimit-*`` headers), and returns the :class:`Caller`. After the answer,
:meth:`KeyRing.record_usage` adds its tokens to the caller's ``tpm`` window.

- Keys are compared in constant time: the given key is hashed (SHA-256) and its digest
  compared with every configured digest, without stopping at a match.
- A key never appears in a log line, an error or a ``repr``; its name may.
- Limits count in the state backend (:mod:`llmplex.state`): across every instance with
  a shared one. ``rpm`` counts the requests that ask a model (chat completions,
  responses, embeddings, Anthropic messages); the other ``/v1`` routes only check the key.
- ``models``: globs (:func:`fnmatch.fnmatchcase`); one with a ``:`` matches
  ``provider:model`` of every route the request may take (provider in lower case),
  one without matches the model name as asked and the routes' model ids. A request is
  allowed when every route it may take is.
- Keys given as ``api_keys`` (``--api-key``) have no limits and reach every model.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import re
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, Self

from ..errors import InvalidRequestError, LLMplexError
from ..state.limits import Decision, Limiter, LocalLimiter
from .errors import APIError

__all__ = ["ApiKey", "Caller", "KeyRing", "parse_keys"]

log = logging.getLogger("llmplex.server")

_FIELDS = {"key": str, "key_sha256": str, "rpm": int, "tpm": int, "models": list}
_HEX = re.compile(r"[0-9a-fA-F]{64}")


@dataclass(frozen=True)
class ApiKey:
    """One configured key: its name, the SHA-256 of its secret, and its limits."""

    name: str
    digest: bytes = field(repr=False)
    rpm: int | None = None
    tpm: int | None = None
    models: tuple[str, ...] | None = None

    def __repr__(self) -> str:  # never the digest either
        return (
            f"ApiKey(name={self.name!r}, rpm={self.rpm!r}, tpm={self.tpm!r}, "
            f"models={self.models!r})"
        )

    @property
    def limited(self) -> bool:
        return self.rpm is not None or self.tpm is not None


@dataclass(frozen=True)
class Caller:
    """Who made a request: the configured key (None: no keys, or a plain ``api_keys``
    one)."""

    key: ApiKey | None = None

    @property
    def name(self) -> str | None:
        return self.key.name if self.key is not None else None


ANONYMOUS = Caller()


def parse_keys(table: Mapping[str, Any], where: str = "[server.keys]") -> list[ApiKey]:
    """The keys of a ``[server.keys]`` table (name -> its table), validated: every
    field known and typed, exactly one of ``key``/``key_sha256``, limits positive."""
    if not isinstance(table, Mapping):
        raise InvalidRequestError(f"{where} must be a table of tables", param="keys")
    keys = []
    for name, entry in table.items():
        here = f"{where.removesuffix(']')}.{name}]"
        if not isinstance(entry, Mapping):
            raise InvalidRequestError(f"{here} must be a table", param="keys")
        for option, value in entry.items():
            expected = _FIELDS.get(option)
            if expected is None:
                raise InvalidRequestError(
                    f"{here}: unknown key {option!r} (known: {', '.join(_FIELDS)})", param=option
                )
            if not isinstance(value, expected) or isinstance(value, bool):
                raise InvalidRequestError(
                    f"{here}: {option!r} must be of type {expected.__name__}", param=option
                )
        if ("key" in entry) == ("key_sha256" in entry):
            raise InvalidRequestError(
                f"{here}: give exactly one of 'key' and 'key_sha256'", param="key"
            )
        if "key" in entry:
            if not entry["key"]:
                raise InvalidRequestError(f"{here}: 'key' is empty", param="key")
            digest = hashlib.sha256(entry["key"].encode()).digest()
        else:
            if not _HEX.fullmatch(entry["key_sha256"]):
                raise InvalidRequestError(
                    f"{here}: 'key_sha256' must be 64 hexadecimal digits (the SHA-256 of the key)",
                    param="key_sha256",
                )
            digest = bytes.fromhex(entry["key_sha256"])
        for limit in ("rpm", "tpm"):
            if limit in entry and entry[limit] < 1:
                raise InvalidRequestError(
                    f"{here}: {limit!r} must be a positive integer", param=limit
                )
        models = entry.get("models")
        if models is not None and not all(isinstance(m, str) and m for m in models):
            raise InvalidRequestError(
                f"{here}: 'models' must be a list of model names or globs", param="models"
            )
        keys.append(
            ApiKey(
                str(name),
                digest,
                entry.get("rpm"),
                entry.get("tpm"),
                tuple(models) if models is not None else None,
            )
        )
    digests = [k.digest for k in keys]
    if len(set(digests)) != len(digests):
        raise InvalidRequestError(f"{where}: two keys have the same secret", param="keys")
    return keys


class KeyRing:
    """The keys a server accepts (see the module docstring). ``keys``: configured ones
    (:class:`ApiKey`, or a ``[server.keys]`` table); ``plain``: keys without limits;
    ``limiter``: where limits are counted (default: in this process); ``router``: to
    see which providers a model name reaches (for ``models``)."""

    def __init__(
        self,
        keys: Iterable[ApiKey] | Mapping[str, Any] = (),
        plain: Iterable[str] = (),
        *,
        limiter: Limiter | None = None,
        router: Any = None,
    ) -> None:
        configured = parse_keys(keys) if isinstance(keys, Mapping) else list(keys)
        self._entries: list[tuple[bytes, ApiKey | None]] = [(k.digest, k) for k in configured]
        self._entries += [(hashlib.sha256(p.encode()).digest(), None) for p in plain if p]
        self.limiter = limiter or LocalLimiter()
        self.router = router

    def __repr__(self) -> str:
        names = [k.name for _, k in self._entries if k is not None]
        return f"KeyRing(keys={names!r}, plain={sum(k is None for _, k in self._entries)})"

    @property
    def active(self) -> bool:
        """Whether any key is required."""
        return bool(self._entries)

    def authenticate(self, headers: Mapping[str, str], *, anthropic: bool = False) -> Caller:
        """The caller the request's key belongs to; 401 without a known key. OpenAI's
        routes take ``Authorization: Bearer``; Anthropic's (``anthropic``) also
        ``x-api-key``."""
        if not self._entries:
            return ANONYMOUS
        given = headers.get("x-api-key", "") if anthropic else ""
        if not given:
            bearer = headers.get("authorization", "")
            if bearer[:7].lower() == "bearer ":
                given = bearer[7:].strip()
        if not given:
            if anthropic:
                raise APIError(
                    401,
                    "x-api-key header is required (one of this server's API "
                    "keys; Authorization: Bearer also works)",
                    code="invalid_api_key",
                )
            raise APIError(
                401,
                "You didn't provide an API key. Send it in an Authorization "
                "header using Bearer auth (Authorization: Bearer YOUR_KEY).",
                code="invalid_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )
        digest = hashlib.sha256(given.encode("utf-8", "surrogateescape")).digest()
        found: ApiKey | None = None
        matched = False
        for known, key in self._entries:  # every digest compared: timing tells nothing
            same = hmac.compare_digest(digest, known)
            if same and not matched:
                matched, found = True, key
        if not matched:
            if anthropic:
                raise APIError(401, "invalid x-api-key", code="invalid_api_key")
            raise APIError(
                401,
                "Incorrect API key provided.",
                code="invalid_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return Caller(found) if found is not None else ANONYMOUS

    async def admit(
        self,
        headers: Mapping[str, str],
        model: str | None,
        *,
        provider: Any = None,
        anthropic: bool = False,
    ) -> Caller:
        """Authenticate, check the model against the key's ``models``, count the request
        against its ``rpm`` (and refuse it if its ``tpm`` is spent); the caller."""
        caller = self.authenticate(headers, anthropic=anthropic)
        key = caller.key
        if key is None:
            return caller
        if key.models is not None:
            self._check_model(key, model or "", provider)
        if key.limited:
            decision = await self.limiter.admit(key.name, key.rpm, key.tpm)
            if not decision.allowed:
                raise _refusal(key, decision)
        return caller

    async def record_usage(self, caller: Caller, tokens: int | None) -> None:
        """Add an answer's tokens to the caller's ``tpm`` window (when it has one)."""
        key = caller.key
        if key is None or key.tpm is None or not tokens:
            return
        try:
            await self.limiter.spend(key.name, int(tokens))
        except LLMplexError as exc:  # the answer was given: say it, do not fail it
            log.warning("tokens of key %r not counted: %s", key.name, exc)

    def metered(self, caller: Caller, opening: Awaitable[Any]) -> Awaitable[Any]:
        """``opening`` (an awaitable giving a chat chunk stream), with the stream's usage
        recorded at its end; unchanged when the caller has no ``tpm``."""
        key = caller.key
        if key is None or key.tpm is None:
            return opening
        return self._metered(caller, opening)

    async def _metered(self, caller: Caller, opening: Awaitable[Any]) -> Any:
        return _Metered(self, caller, await opening)

    def _check_model(self, key: ApiKey, model: str, provider: Any) -> None:
        patterns = key.models or ()
        names = [model]
        routes: Sequence[Any] = ()
        if self.router is not None:
            try:
                routes = self.router.resolve(model, provider)
            except LLMplexError:
                routes = ()  # the route's own error comes after, if the name is allowed
        if routes:
            names = [n for route in routes for n in (f"{route.name.lower()}:{route.model}",)]
            allowed = all(
                _matches(patterns, name, model, route.model)
                for name, route in zip(names, routes, strict=True)
            )
        else:
            allowed = _matches(patterns, model, model, model)
        if not allowed:
            raise APIError(
                403,
                f"The model {model!r} is not allowed for this API key.",
                "permission_error",
                "model_not_allowed",
                "model",
            )


def _matches(patterns: Sequence[str], qualified: str, asked: str, model_id: str) -> bool:
    for pattern in patterns:
        if ":" in pattern:
            head, _, rest = pattern.partition(":")
            target_head, _, target_rest = qualified.partition(":")
            if fnmatchcase(target_head.lower(), head.lower()) and fnmatchcase(target_rest, rest):
                return True
        elif fnmatchcase(asked, pattern) or fnmatchcase(model_id, pattern):
            return True
    return False


def _seconds(value: float) -> str:
    """OpenAI's reset format: ``"1s"``, ``"6m0s"``."""
    whole = max(1, math.ceil(value))
    return f"{whole // 60}m{whole % 60}s" if whole >= 60 else f"{whole}s"


def _refusal(key: ApiKey, decision: Decision) -> APIError:
    wait = max(1, math.ceil(decision.retry_after))
    headers = {"Retry-After": str(wait)}
    if key.rpm is not None:
        headers.update(
            {
                "x-ratelimit-limit-requests": str(key.rpm),
                "x-ratelimit-remaining-requests": str(max(0, key.rpm - decision.requests)),
                "x-ratelimit-reset-requests": _seconds(
                    decision.retry_after if decision.exceeded == "requests" else 0
                ),
            }
        )
    if key.tpm is not None:
        headers.update(
            {
                "x-ratelimit-limit-tokens": str(key.tpm),
                "x-ratelimit-remaining-tokens": str(max(0, key.tpm - decision.tokens)),
                "x-ratelimit-reset-tokens": _seconds(
                    decision.retry_after if decision.exceeded == "tokens" else 0
                ),
            }
        )
    if decision.exceeded == "tokens":
        what = f"tokens per minute (TPM): limit {key.tpm}, used {decision.tokens}"
    else:
        what = f"requests per minute (RPM): limit {key.rpm}, used {decision.requests}"
    return APIError(
        429,
        f"Rate limit reached for API key {key.name!r} on {what}. Please try again in {wait}s.",
        "requests" if decision.exceeded != "tokens" else "tokens",
        "rate_limit_exceeded",
        headers=headers,
    )


class _Metered:
    """A chat chunk stream that records its usage (the last chunk's) when it ends."""

    __slots__ = ("_caller", "_done", "_ring", "_stream", "_tokens")

    def __init__(self, ring: KeyRing, caller: Caller, stream: Any) -> None:
        self._ring, self._caller, self._stream = ring, caller, stream
        self._tokens = 0
        self._done = False

    def __aiter__(self) -> _Metered:
        return self

    async def __anext__(self) -> Any:
        try:
            chunk = await self._stream.__anext__()
        except StopAsyncIteration:
            await self._record()
            raise
        usage = getattr(chunk, "usage", None)
        if usage is not None:
            self._tokens = int(getattr(usage, "total_tokens", 0) or 0)
        return chunk

    async def _record(self) -> None:
        if not self._done:
            self._done = True
            await self._ring.record_usage(self._caller, self._tokens)

    async def aclose(self) -> None:
        try:
            await self._record()  # stopped early: what it used so far still counts
        finally:
            await self._stream.aclose()

    close = aclose

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
