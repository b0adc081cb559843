"""Model lists discovered from OpenAI-compatible upstreams (``GET {base_url}/models``).

A keyed OpenAI-compatible provider serves any model name it is given by name
(``"openai:any-model"``); a *bare* name (``"gpt-4.1-nano"``) is routed to it when its
static row lists the name or when its upstream's model list does. That list is fetched
here, by :class:`ModelCache`:

- only for providers the user configured (the client decides which: never an endpoint the
  user did not configure or name);
- with a short deadline (:data:`DISCOVERY_TIMEOUT` seconds for the whole exchange), at most
  :data:`MAX_DISCOVERY_BYTES` read and :data:`MAX_DISCOVERED_MODELS` ids kept;
- cached per (provider, base URL, fingerprint of the credentials) for
  :data:`DISCOVERY_TTL` seconds, and a failure for :data:`FAILURE_TTL` seconds (a dead
  upstream is not asked again on every listing). The fingerprint is a truncated SHA-256:
  the credentials themselves are never kept here.

Routing reads the cache synchronously (:meth:`ModelCache.listed`): discovery happens when
models are listed (``client.models.list()``, ``GET /v1/models``, ``llmplex models``), or
when a bare name is unknown and some configured provider's list is not fresh. The last
list an upstream gave keeps serving routing while a later refresh fails.

This module imports nothing heavy; the HTTP request is the provider's own
(``fetch_models``), imported when it runs.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DISCOVERY_TIMEOUT",
    "DISCOVERY_TTL",
    "FAILURE_TTL",
    "MAX_DISCOVERED_MODELS",
    "MAX_DISCOVERY_BYTES",
    "DiscoveredModel",
    "ModelCache",
    "fingerprint",
    "parse_model_list",
]

log = logging.getLogger("llmplex.discovery")

#: seconds a whole ``GET /models`` may take (connect, headers, body)
DISCOVERY_TIMEOUT = 3.0
#: seconds a discovered list is fresh
DISCOVERY_TTL = 600.0
#: seconds a failed discovery is not retried
FAILURE_TTL = 60.0
#: the largest ``/models`` body read (OpenRouter's, with descriptions, is about 1 MB)
MAX_DISCOVERY_BYTES = 8 * 1024 * 1024
#: the most model ids kept of one upstream's list (the rest are dropped)
MAX_DISCOVERED_MODELS = 5000
#: model ids longer than this are not kept (no real id comes near it)
MAX_MODEL_ID = 256
#: the most (provider, base URL, credentials) lists kept (the oldest is dropped)
MAX_ENTRIES = 128


@dataclass(frozen=True)
class DiscoveredModel:
    """One model an upstream listed: its id, and ``created`` / ``owned_by`` when given."""

    id: str
    created: int | None = None
    owned_by: str | None = None


def fingerprint(*secrets: str | None) -> str:
    """A short, one-way digest of credentials: tells configurations apart without keeping
    them (16 hex digits of SHA-256)."""
    digest = hashlib.sha256("\0".join(s or "" for s in secrets).encode("utf-8", "replace"))
    return digest.hexdigest()[:16]


def parse_model_list(data: Any) -> list[DiscoveredModel] | None:
    """The models of an OpenAI ``{"object": "list", "data": [{"id", "created",
    "owned_by"}...]}`` body (at most :data:`MAX_DISCOVERED_MODELS`; odd entries skipped),
    or None when it has no ``data`` array."""
    items = data.get("data") if isinstance(data, dict) else None
    if not isinstance(items, list):
        return None
    out: dict[str, DiscoveredModel] = {}
    for item in items:
        if len(out) >= MAX_DISCOVERED_MODELS:
            break
        if not isinstance(item, dict):
            continue
        model_id = item.get("id")
        if not isinstance(model_id, str) or not model_id or len(model_id) > MAX_MODEL_ID:
            continue
        created = item.get("created")
        owner = item.get("owned_by")
        out.setdefault(
            model_id,
            DiscoveredModel(
                model_id,
                created
                if isinstance(created, int) and not isinstance(created, bool) and created > 0
                else None,
                owner[:MAX_MODEL_ID] if isinstance(owner, str) and owner else None,
            ),
        )
    return list(out.values())


@dataclass
class _Entry:
    models: dict[str, DiscoveredModel] | None  # the last list this configuration gave
    checked: float  # when it was last asked
    ok: bool  # whether that last asking worked
    error: str | None = None


_Key = tuple[str, str, str]  # provider name, base URL, credentials fingerprint


class ModelCache:
    """Discovered model lists (see the module's docstring). One per
    :class:`~llmplex.routing.Router` (its ``discovered``)."""

    def __init__(
        self,
        *,
        ttl: float = DISCOVERY_TTL,
        failure_ttl: float = FAILURE_TTL,
        timeout: float = DISCOVERY_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.failure_ttl = failure_ttl
        self.timeout = timeout
        self.clock = clock
        self._entries: OrderedDict[_Key, _Entry] = OrderedDict()
        #: provider name -> the key of its configuration as last discovered
        self._current: dict[str, _Key] = {}
        self._running: dict[tuple[_Key, int], asyncio.Future[_Entry]] = {}

    def __repr__(self) -> str:  # no URLs or fingerprints: just how much is held
        return f"ModelCache({len(self._entries)} lists)"

    @staticmethod
    def key(
        provider: str,
        base_url: str,
        api_key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> _Key:
        """What a list is cached under: the provider, the base URL and a fingerprint of
        the credentials (the key and the headers, which may carry one)."""
        secrets = [api_key, *(f"{k}:{v}" for k, v in sorted((headers or {}).items()))]
        return (provider, base_url.rstrip("/"), fingerprint(*secrets))

    def listed(self, provider: str) -> Mapping[str, DiscoveredModel]:
        """The models ``provider``'s upstream listed, for its configuration as last
        discovered (empty when none was). Cheap: read by routing for every bare name."""
        key = self._current.get(provider)
        if key is None:
            return _EMPTY
        entry = self._entries.get(key)
        if entry is None or entry.models is None:
            return _EMPTY
        return entry.models

    def error(self, provider: str) -> str | None:
        """Why the last discovery for ``provider`` failed (None: it worked, or none ran)."""
        key = self._current.get(provider)
        entry = self._entries.get(key) if key is not None else None
        return entry.error if entry is not None and not entry.ok else None

    def fresh(self, key: _Key) -> bool:
        """Whether the list of ``key`` need not be asked for again yet."""
        entry = self._entries.get(key)
        if entry is None:
            return False
        ttl = self.ttl if entry.ok else self.failure_ttl
        return self.clock() - entry.checked < ttl

    def forget(self, provider: str) -> None:
        """``provider`` is not configured (any more): routing stops using its list."""
        self._current.pop(provider, None)

    async def discover(
        self,
        cls: Any,
        *,
        base_url: str,
        api_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        proxy: str | None = None,
        force: bool = False,
    ) -> bool:
        """Make ``cls``'s list for this configuration current, asking its upstream unless
        the cached one is fresh (or ``force``). Returns whether the upstream was asked.
        Never raises for the upstream's failures: they are remembered (:meth:`error`)."""
        name = cls.get_name()
        key = self.key(name, base_url, api_key, headers)
        self._current[name] = key
        if not force and self.fresh(key):
            return False
        # Two listings at once ask the upstream once (per event loop: futures belong to one).
        flight = (key, id(asyncio.get_running_loop()))
        running = self._running.get(flight)
        if running is not None:
            # wait() raises only for our own cancellation, never the owner's
            await asyncio.wait({running})
            return True
        future: asyncio.Future[_Entry] = asyncio.get_running_loop().create_future()
        self._running[flight] = future
        try:
            entry = await self._fetch(cls, key, base_url, api_key, headers, proxy)
        except BaseException:  # cancelled: the waiters go on with what the cache holds
            future.cancel()
            raise
        finally:
            del self._running[flight]
        future.set_result(entry)
        return True

    async def _fetch(
        self,
        cls: Any,
        key: _Key,
        base_url: str,
        api_key: str | None,
        headers: Mapping[str, str] | None,
        proxy: str | None,
    ) -> _Entry:
        from ..errors import LLMplexError

        previous = self._entries.get(key)
        try:
            async with asyncio.timeout(self.timeout):
                models = await cls.fetch_models(
                    base_url=base_url,
                    api_key=api_key,
                    headers=headers,
                    proxy=proxy,
                    timeout=self.timeout,
                    limit=MAX_DISCOVERY_BYTES,
                )
        except (LLMplexError, TimeoutError, OSError, ValueError) as exc:
            # What the provider's error says is scrubbed of the credentials it carried.
            reason = (
                "timed out"
                if isinstance(exc, TimeoutError) and not str(exc)
                else f"{type(exc).__name__}: {exc}"
            )
            entry = _Entry(previous.models if previous else None, self.clock(), False, reason[:300])
            log.info(
                "model list of %s not discovered (asked again in %gs): %s",
                cls.get_name(),
                self.failure_ttl,
                entry.error,
            )
        else:
            entry = _Entry({m.id: m for m in models}, self.clock(), True)
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > MAX_ENTRIES:
            self._entries.popitem(last=False)
        return entry


_EMPTY: Mapping[str, DiscoveredModel] = {}
