"""Which provider serves a model: catalog, resolution, health order, fallback, cooldown.

Model names take three forms:

- ``"provider:model"`` (``"replicate:meta/meta-llama-3-8b-instruct"``) — that provider only
  (the canonical form). LiteLLM's ``"provider/model"`` (``"groq/llama-3.1-8b-instant"``)
  means the same when the part before the first ``/`` is a registered provider name
  (case-insensitive): ``"openai/gpt-4o-mini"`` is OpenAI's, never OpenRouter's model of that
  id (write ``"openrouter:openai/gpt-4o-mini"`` for that). Any other ``/`` is part of the
  model id (``"meta/meta-llama-3-8b-instruct"``), and a provider's own id that starts with
  its name (``"openrouter/auto"``) is kept whole;
- a ``provider=`` argument (class, name, or a list of them, tried in order); there a
  ``"other/..."`` model naming a different provider is that provider's model id as written;
- a bare model name or alias (``"olmo-3.1-32b"``) — every working provider that lists it
  (or a router alias), tried in order of health. A provider lists the models of its static
  row and, once discovered, those its upstream's ``GET /models`` gave (``discovered``, a
  :class:`~llmplex.providers.discovery.ModelCache` the client fills for configured
  providers only). A bare name that no provider lists is a ModelNotFoundError with close
  matches: it is never sent to every keyed provider to see who takes it.

A ``prefix:`` that is not a provider name is part of the model name (Ollama's
``"llama3.2:1b"``), unless it is a near miss of one — one edit away for names of up to five
characters, two for longer ones, at least three characters — and the whole name is no
known model or alias: then it is refused as an unknown provider with a did-you-mean
(``"alenai:olmo-3.1-32b"`` → AllenAI).

Fallback: a provider that fails before its first text chunk is skipped and the next one is
tried; a failure after text reached the caller is raised (never retried: no duplicated
text). A provider that failed is cooled down — skipped for a while, for as long as a 429's
``Retry-After`` says when it says — and tried again once the cooldown has passed.
"""

from __future__ import annotations

import asyncio
import difflib
import functools
import inspect
import logging
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import providers as _providers
from .errors import (
    AllProvidersFailed,
    EmulationError,
    InvalidRequestError,
    LLMplexError,
    MissingAuthError,
    ModelNotFoundError,
    ProviderTimeoutError,
    RateLimitError,
    ResponseStatusError,
)
from .events import Usage
from .providers.base import AsyncGeneratorProvider, ProviderModelMixin
from .providers.discovery import ModelCache
from .types import Chunk

if TYPE_CHECKING:  # pragma: no cover
    from .request import ChatRequest

__all__ = [
    "Attempt",
    "CoolingDown",
    "ProviderArg",
    "ProviderHealth",
    "ProviderSpec",
    "Route",
    "Router",
    "RouterObserver",
]

_log = logging.getLogger("llmplex.routing")

#: what ``provider=`` takes: a provider's name or its class
ProviderArg = str | type[AsyncGeneratorProvider]
#: the old name of :data:`ProviderArg` (not :class:`llmplex.providers.spec.ProviderSpec`)
ProviderSpec = ProviderArg


class CoolingDown(LLMplexError):
    """A provider was skipped because it failed recently; ``.retry_after`` says for how long."""


@dataclass(frozen=True)
class Route:
    """One way to serve a request: a provider and the model name it knows."""

    provider: type[AsyncGeneratorProvider]
    model: str
    named: bool = False  # chosen by the caller (prefix, provider=, alias): skip no checks

    @functools.cached_property
    def name(self) -> str:
        # (cached: read many times per request; a class's name does not change)
        return self.provider.get_name()


@dataclass
class ProviderHealth:
    """What the router remembers of one provider."""

    successes: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    cooldown_until: float = 0.0
    last_error: BaseException | None = None

    def cooling(self, now: float) -> float:
        """Seconds of cooldown left (0 when available)."""
        return max(0.0, self.cooldown_until - now)

    def snapshot(self, now: float) -> dict[str, Any]:
        left = self.cooling(now)
        return {
            "successes": self.successes,
            "failures": self.failures,
            "consecutive_failures": self.consecutive_failures,
            "cooling_down": left > 0,
            "cooldown_remaining": round(left, 3),
            "last_error": (
                f"{type(self.last_error).__name__}: {self.last_error}" if self.last_error else None
            ),
        }


@dataclass(slots=True)
class Attempt:
    """One try of one route, told to the router's observers when it has ended.

    ``outcome``: ``"ok"`` (answered, also when the consumer stopped reading after text),
    ``"error"`` (failed: ``error`` says how), ``"invalid"`` (the caller's mistake, an
    :class:`~llmplex.errors.InvalidRequestError`) or ``"cancelled"``. ``fallback``: an
    earlier attempt of the same request failed. ``cooldown``: this failure (re)started
    the provider's cooldown. ``start_ns``/``end_ns``: wall-clock ``time.time_ns()``.
    ``usage``: the token counts the upstream reported, if it did."""

    provider: str
    model: str
    fallback: bool
    start_ns: int
    end_ns: int = 0
    outcome: str = "cancelled"
    error: BaseException | None = None
    usage: Usage | None = None
    cooldown: bool = False


class RouterObserver:
    """What :attr:`Router.observers` hold (metrics, traces): subclass and override.

    Called in the task that runs the request, right after each attempt, so context
    variables of the request (its id, its trace span) are visible. Must be quick and must
    not raise (an exception is logged and dropped)."""

    def attempt_ended(self, attempt: Attempt) -> None:
        """One attempt has ended (see :class:`Attempt`)."""


#: the most corrective retries an emulated answer may get (each is a whole new answer)
MAX_EMULATION_RETRIES = 3


@dataclass
class Router:
    """Resolves model names to routes and runs requests with fallback.

    ``order``: provider names tried first, in this order (others follow in registry order).
    ``aliases``: extra model names, each a list of ``"provider:model"`` routes.
    ``retries``: extra attempts on the same provider before moving on (not after a 429).
    ``cooldown``: seconds a failed provider is skipped, doubling with consecutive failures
    up to ``max_cooldown``; a 429's ``Retry-After`` takes precedence.
    ``include_not_working``: also route bare names to providers marked not ``working``.
    ``max_routes``: the most providers one request may be tried on (a longer ``provider=``
    list is refused; repeated names count once), so one request cannot fan out upstream.
    ``emulate``: whether tool calls and ``response_format`` are emulated through the
    prompt on routes whose service lacks them (:mod:`llmplex.emulation`; a call's
    ``emulate=`` wins); native routes are preferred. ``emulation_retries``: corrective
    retries when an emulated answer is unusable (a required call missing, arguments or
    JSON not matching the schema).
    ``discovered``: the model lists discovered from configured upstreams (read here,
    filled by :class:`~llmplex.client.AsyncClient`).
    """

    order: Sequence[str] = ()
    aliases: dict[str, Sequence[str]] = field(default_factory=dict)
    retries: int = 0
    cooldown: float = 30.0
    max_cooldown: float = 300.0
    include_not_working: bool = False
    max_routes: int = 8
    emulate: bool = True
    emulation_retries: int = 1
    clock: Callable[[], float] = time.monotonic
    health: dict[str, ProviderHealth] = field(default_factory=dict)
    discovered: ModelCache = field(default_factory=ModelCache, repr=False)
    #: told of every attempt (:class:`RouterObserver`); none: nothing is measured
    observers: list[RouterObserver] = field(default_factory=list, repr=False)
    #: health shared with other processes (:class:`llmplex.state.health.SharedHealth`,
    #: set by the server for a Redis state backend); None: this process's own only
    shared: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        retries = self.emulation_retries
        if (
            isinstance(retries, bool)
            or not isinstance(retries, int)
            or not 0 <= retries <= MAX_EMULATION_RETRIES
        ):
            raise InvalidRequestError(
                f"emulation_retries must be an integer from 0 to {MAX_EMULATION_RETRIES}, "
                f"got {self.emulation_retries!r}",
                param="emulation_retries",
            )

    # -- catalog ---------------------------------------------------------------------------

    def provider_classes(self) -> list[type[AsyncGeneratorProvider]]:
        """Every known provider, ``order`` first."""
        names = list(dict.fromkeys([*self.order, *_providers.provider_names()]))
        return [_providers.get_provider(n) for n in names]

    def catalog(self) -> dict[str, list[str]]:
        """Model id -> names of the providers listing it (aliases included)."""
        table: dict[str, list[str]] = {}
        for cls in self.provider_classes():
            # a name that is both a model and an alias counts once
            for model in dict.fromkeys(
                [
                    *_naming(cls).get_models(),
                    *getattr(cls, "model_aliases", {}),
                    *self.discovered.listed(cls.get_name()),
                ]
            ):
                table.setdefault(model, []).append(cls.get_name())
        for alias, targets in self.aliases.items():
            table.setdefault(alias, []).extend(t.split(":", 1)[0] for t in targets)
        return table

    # -- resolution ------------------------------------------------------------------------

    def resolve(
        self, model: str | None, provider: ProviderArg | Sequence[ProviderArg] | None = None
    ) -> list[Route]:
        """The routes able to serve ``model``, in preference order (before health)."""
        model = model or ""
        if provider is not None:
            specs: list[ProviderArg] = (
                [provider] if isinstance(provider, (str, type)) else list(provider)
            )
            if not specs:
                raise InvalidRequestError("provider= is an empty list", param="provider")
            if len(specs) > self.max_routes:
                specs = list(
                    dict.fromkeys(s if isinstance(s, type) else str(s).lower() for s in specs)
                )
                if len(specs) > self.max_routes:
                    raise InvalidRequestError(
                        f"provider lists {len(specs)} providers; at most {self.max_routes} "
                        "are tried for one request",
                        param="provider",
                    )
            prefix, rest = self._split_prefix(model, slash=False)
            routes = []
            for spec in specs:
                cls = self._provider(spec)
                if prefix is not None and prefix is not cls:
                    raise InvalidRequestError(
                        f"model {model!r} names provider {prefix.get_name()} but "
                        f"provider={cls.get_name()} was given",
                        param="model",
                    )
                name = rest
                if prefix is None:  # "groq/..." with provider=Groq; else the id as written
                    slashed, rest_of_slash = self._split_prefix(model)
                    name = rest_of_slash if slashed is cls else model
                route = Route(cls, _naming(cls).get_model(name), named=True)
                if route not in routes:  # a name given twice is tried once
                    routes.append(route)
            return routes

        prefix, rest = self._split_prefix(model)
        if prefix is not None:
            return [Route(prefix, _naming(prefix).get_model(rest), named=True)]

        if model in self.aliases:
            routes = []
            for target in self.aliases[model]:
                named, name = self._split_prefix(target)
                if named is None:
                    raise InvalidRequestError(
                        f"router alias {model!r}: {target!r} is not 'provider:model'"
                    )
                routes.append(Route(named, _naming(named).get_model(name), named=True))
            return routes

        routes, idle = [], []
        for cls in self.provider_classes():
            served = self._serves(cls, model)
            if served is None:
                continue
            if cls.working or self.include_not_working:
                routes.append(Route(cls, served))
            else:
                idle.append(cls.get_name())
        if routes:
            return routes
        if idle:
            first = idle[0].lower()
            raise ModelNotFoundError(
                f"model {model!r} is only offered by {', '.join(idle)}, marked not working; "
                f"name the provider to try anyway, e.g. '{first}:{model}'",
                suggestions=[f"{name.lower()}:{model}" for name in idle],
            )
        known = list(self.catalog())
        suggestions = difflib.get_close_matches(model, known, n=5, cutoff=0.5)
        head, slash, rest = model.partition("/")
        if slash and head and rest:  # "gorq/llama-3.1-8b-instant": a provider near miss?
            suggestions = [
                *(
                    f"{near.lower()}:{rest}"
                    for near in _providers.similar_providers(head, strict=True)
                ),
                *suggestions,
            ][:5]
        hint = f" Did you mean: {', '.join(suggestions)}?" if suggestions else ""
        raise ModelNotFoundError(
            f"no provider offers model {model!r}.{hint} Use 'provider:model' for a model a "
            f"provider serves but does not list; `llmplex models` lists them all.",
            suggestions=suggestions,
        )

    def _serves(self, cls: type[AsyncGeneratorProvider], model: str) -> str | None:
        if not model:
            return _naming(cls).default_model or None
        if model in getattr(cls, "model_aliases", {}):
            return _naming(cls).model_aliases[model]
        if model in _naming(cls).get_models() or model in self.discovered.listed(cls.get_name()):
            return model
        return None  # open-ended catalogues serve other names only given explicitly

    def _split_prefix(
        self, model: str, *, slash: bool = True
    ) -> tuple[type[AsyncGeneratorProvider] | None, str]:
        """The provider a model name names (``provider:model``, and with ``slash``
        LiteLLM's ``provider/model``) and the rest, or ``(None, model)``. See the module's
        docstring for the rules."""
        head, sep, rest = model.partition(":")
        if sep and head and "/" not in head:
            registered = _providers.find_provider(head)
            if registered is not None:
                return _providers.get_provider(registered), rest
            self._refuse_provider_typo(head, rest, model)
            # else a model name that contains ":" (Ollama's "llama3.2:1b")
        if slash:
            head, sep, rest = model.partition("/")
            if sep and head and rest and ":" not in head:
                registered = _providers.find_provider(head)
                if registered is not None:
                    cls = _providers.get_provider(registered)
                    # the provider's own id that starts with its name stays whole
                    return cls, model if self._serves(cls, model) is not None else rest
        return None, model

    def _refuse_provider_typo(self, head: str, rest: str, model: str) -> None:
        """Raise for ``"alenai:olmo-3.1-32b"``: a near miss of a provider name, in a name
        that is no known model or alias."""
        near = _providers.similar_providers(head, strict=True)
        if not near or model in self.aliases:
            return
        if model in self.catalog():
            return
        forms = " or ".join(f"'{name.lower()}:{rest}'" for name in near)
        raise InvalidRequestError(
            f"unknown provider {head!r} — did you mean {' or '.join(near)}? ({forms})",
            param="model",
            suggestions=near,
        )

    @staticmethod
    def _provider(spec: ProviderArg) -> type[AsyncGeneratorProvider]:
        if isinstance(spec, type) and issubclass(spec, AsyncGeneratorProvider):
            return spec
        if isinstance(spec, str):
            return _providers.get_provider(spec)
        raise InvalidRequestError(f"provider must be a provider class or name, not {spec!r}")

    # -- capabilities ------------------------------------------------------------------------

    def capable(self, routes: Sequence[Route], request: ChatRequest) -> list[Route]:
        """The routes whose provider can serve all of ``request`` (tools, images, a
        ``response_format``, each field...), those serving it natively first, then those
        where llmplex would emulate tool calls or JSON output (when emulation is on).
        When none can, an InvalidRequestError names the first field they lack and the
        providers that would take it."""
        if not request.fields and not request.needs and not request.route_options:
            return list(routes)
        emulate = self.emulate if request.emulate is None else request.emulate
        native, emulated, lacking = [], [], []
        for route in routes:
            missing = route.provider.missing(request, emulate, route.model)
            if missing:
                lacking.append((route, missing))
            elif emulate and route.provider.emulated(request, route.model):
                emulated.append(route)
            else:
                native.append(route)
        if native or emulated:
            return native + emulated
        param, need = lacking[0][1][0]
        names = list(dict.fromkeys(route.name for route, _ in lacking))
        could = [
            cls.get_name()
            for cls in self.provider_classes()
            if param not in {p for p, _ in cls.missing(request, emulate)}
        ]
        what = f"{param!r}" if need == param else f"{param!r} (needs {need} support)"
        if could:
            shown = ", ".join(could[:8]) + (f" and {len(could) - 8} more" if len(could) > 8 else "")
            hint = f"; providers that take it: {shown}"
        else:
            hint = "; no provider takes it"
        if not emulate and any(
            route.provider.missing(request, True, route.model) == [] for route, _ in lacking
        ):
            hint += " (emulation through the prompt is off for this call: emulate=True allows it)"
        # the provider may say why, for its model (a Replicate model's own inputs)
        why = (
            lacking[0][0].provider.why_missing(param, lacking[0][0].model)
            if len(lacking) == 1
            else None
        )
        reason = f" ({why})" if why else ""
        raise InvalidRequestError(
            f"{what} is not supported by {', '.join(names)}{reason}{hint}", param=param
        )

    # -- health ----------------------------------------------------------------------------

    def _health(self, name: str) -> ProviderHealth:
        health = self.health.get(name)
        if health is None:
            health = self.health[name] = ProviderHealth()
        return health

    def record_success(self, name: str) -> None:
        health = self._health(name)
        health.successes += 1
        health.consecutive_failures = 0
        health.cooldown_until = 0.0

    def record_failure(self, name: str, error: BaseException) -> None:
        health = self._health(name)
        health.failures += 1
        health.consecutive_failures += 1
        health.last_error = error
        retry_after = getattr(error, "retry_after", None)
        if isinstance(error, RateLimitError) and retry_after is not None:
            seconds = float(retry_after)
        else:
            # The exponent is bounded: 2 ** 1024 would not fit a float.
            doublings = min(health.consecutive_failures - 1, 32)
            seconds = min(self.max_cooldown, self.cooldown * 2**doublings)
        health.cooldown_until = max(health.cooldown_until, self.clock() + seconds)

    def ordered(
        self, routes: Iterable[Route]
    ) -> tuple[list[Route], list[tuple[str, BaseException]]]:
        """Routes to try, healthiest first (stable), and those skipped while cooling down.

        A single route is always tried: there is nothing to fall back to, and the caller
        would rather see the real error than a cooldown notice."""
        routes = list(routes)
        if len(routes) <= 1:
            return routes, []
        now = self.clock()
        ready: list[Route] = []
        skipped: list[tuple[str, BaseException]] = []
        for route in routes:
            health = self.health.get(route.name)
            left = health.cooling(now) if health else 0.0
            if left > 0:
                last = health.last_error  # type: ignore[union-attr]
                skipped.append(
                    (
                        route.name,
                        CoolingDown(
                            f"skipped, cooling down for {left:.1f}s after "
                            f"{type(last).__name__}: {last}",
                            provider=route.name,
                            retry_after=left,
                        ),
                    )
                )
            else:
                ready.append(route)
        ready.sort(
            key=lambda r: self.health[r.name].consecutive_failures if r.name in self.health else 0
        )
        return ready, skipped

    def status(self) -> dict[str, dict[str, Any]]:
        """Health of every provider seen so far (for ``/v1/providers``)."""
        now = self.clock()
        return {name: h.snapshot(now) for name, h in self.health.items()}

    # -- fallback --------------------------------------------------------------------------

    async def stream(
        self,
        routes: Sequence[Route],
        open_stream: Callable[[Route], AsyncIterator[Chunk]],
        *,
        model: str | None = None,
        first_token_timeout: float | Callable[[Route], float | None] | None = None,
        total_timeout: float | None = None,
        attempt_timeout: Callable[[Route], float | None] | None = None,
    ) -> AsyncIterator[tuple[Route, Chunk]]:
        """Yield ``(route, chunk)`` from the first route that works.

        Typed chunks that come before any text are held back until the text starts, so a
        provider that fails early leaves no trace in the output.

        Deadlines (seconds; None: none): an attempt that brings no content (text or an
        answer event) within ``first_token_timeout`` (a number, or a function of the
        route) fails with :class:`ProviderTimeoutError` and the next route is tried, so an
        upstream that only sends keep-alives cannot hold a request; the whole answer,
        fallback included, must end within ``total_timeout``, and one provider's attempt
        within ``attempt_timeout(route)`` when that gives a number.
        """
        loop = asyncio.get_running_loop()
        running_task = _task_getter(loop)
        total_at = loop.time() + total_timeout if total_timeout else None
        if self.shared is not None and len(routes) > 1:  # one read per decision
            await self.shared.pull(self, [route.name for route in routes])
        ordered, errors = self.ordered(routes)
        observers = self.observers
        tried = 0  # attempts so far (each after the first follows a failure)
        for route in ordered:
            for attempt in range(1 + max(0, self.retries)):
                first = (
                    first_token_timeout(route)
                    if callable(first_token_timeout)
                    else first_token_timeout
                )
                until, total = total_at, total_timeout
                own = attempt_timeout(route) if attempt_timeout is not None else None
                if own is not None and (until is None or loop.time() + own < until):
                    until, total = loop.time() + own, own
                seen = (
                    Attempt(route.name, route.model, tried > 0, time.time_ns())
                    if observers
                    else None
                )
                tried += 1
                watch = _Watch(loop, route.name, first, total, until)
                stream = open_stream(route)
                iterator = stream.__aiter__()
                delivered = False
                held: list[Chunk] = []
                try:
                    while True:
                        if watch.fired is not None:  # passed while the caller was busy
                            watch.raise_if_fired()
                        watch.task = running_task()
                        try:
                            chunk = await iterator.__anext__()
                        except StopAsyncIteration:
                            break
                        except asyncio.CancelledError:
                            watch.raise_if_fired()
                            raise
                        finally:
                            watch.task = None
                        if seen is not None and type(chunk) is not str and isinstance(chunk, Usage):
                            seen.usage = chunk
                        if not delivered:
                            # Text, or an event that is part of the answer (reasoning, a
                            # tool call...): from here on no other provider may take over.
                            if chunk if type(chunk) is str else chunk.content:  # type: ignore[union-attr]
                                delivered = True
                                watch.content_started()
                                for early in held:
                                    yield route, early
                                held.clear()
                            else:
                                held.append(chunk)
                                continue
                        yield route, chunk
                    for early in held:
                        yield route, early
                    if seen is not None:
                        seen.outcome = "ok"
                except GeneratorExit:
                    # Our consumer stopped (a stop sequence, a length limit, enough read):
                    # a provider that was answering is healthy.
                    if delivered:
                        self.record_success(route.name)
                        if seen is not None:
                            seen.outcome = "ok"
                    raise
                except InvalidRequestError as exc:
                    if seen is not None:
                        seen.outcome, seen.error = "invalid", exc
                    raise  # the caller's mistake: another provider will not fix it
                except Exception as exc:
                    # A refused request, or one never sent for want of a key, says
                    # nothing of the provider's health (and a retry cannot fix the key).
                    unconfigured = isinstance(exc, MissingAuthError) and exc.unconfigured
                    if not (_refused(exc) or unconfigured):
                        self.record_failure(route.name, exc)
                        if seen is not None:
                            seen.cooldown = True
                    if seen is not None:
                        seen.outcome, seen.error = "error", exc
                    if self.shared is not None and not (_refused(exc) or unconfigured):
                        await self.shared.failed(self, route.name)
                    if delivered or watch.total_passed:
                        raise
                    errors.append((route.name, exc))
                    if isinstance(exc, RateLimitError) or unconfigured or attempt == self.retries:
                        break
                    continue
                finally:
                    watch.stop()
                    if seen is not None:
                        seen.end_ns = time.time_ns()
                        _tell(observers, seen)
                    aclose = getattr(stream, "aclose", None)
                    if aclose is not None:
                        await aclose()
                health = self.health.get(route.name)
                failing = health is not None and (
                    health.consecutive_failures > 0 or health.cooldown_until > 0
                )
                self.record_success(route.name)
                if failing and self.shared is not None:
                    await self.shared.succeeded(route.name)
                return
        if len(errors) == 1 and len(routes) == 1:
            raise errors[0][1]  # one route: its own error says it best
        raise AllProvidersFailed(errors, model)


#: seconds between two looks at the deadlines being watched (their precision)
DEADLINE_TICK = 0.1


class _Deadlines:
    """All the deadlines watched on one event loop, looked at every
    :data:`DEADLINE_TICK` seconds by one timer that runs only while there are any: a
    request adds itself to a set and leaves it (no timer of its own to make and cancel,
    which cost more than the rest of the router per request)."""

    __slots__ = ("loop", "watches", "handle", "__weakref__")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.watches: set[_Watch] = set()
        self.handle: asyncio.TimerHandle | None = None

    def add(self, watch: _Watch) -> None:
        self.watches.add(watch)
        if self.handle is None:
            self.handle = self.loop.call_later(DEADLINE_TICK, self._tick)

    def _tick(self) -> None:
        now = self.loop.time()
        for watch in list(self.watches):
            watch.check(now)
        self.handle = self.loop.call_later(DEADLINE_TICK, self._tick) if self.watches else None


_deadlines: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Deadlines] = (
    weakref.WeakKeyDictionary()
)
#: the one of :data:`_deadlines` used last (the next request is nearly always on its loop)
_last_deadlines: _Deadlines | None = None


class _Watch:
    """The deadlines of one attempt (see :class:`_Deadlines` for how they are watched).
    When one passes while the stream is awaited, the awaiting task is cancelled, and the
    router turns that cancellation into a :class:`ProviderTimeoutError`, the way
    ``asyncio.timeout`` works."""

    __slots__ = (
        "owner",
        "provider",
        "first",
        "total",
        "first_at",
        "total_at",
        "task",
        "fired",
        "total_passed",
        "cancelled",
        "started",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        provider: str,
        first: float | None,
        total: float | None,
        total_at: float | None,
    ) -> None:
        self.provider = provider
        self.first = first
        self.total = total
        self.first_at = loop.time() + first if first else None
        self.total_at = total_at
        self.task: asyncio.Task[Any] | None = None
        self.fired: str | None = None  # which deadline passed
        self.total_passed = False
        self.cancelled: asyncio.Task[Any] | None = None  # the task we cancelled
        self.started = False  # content came: only the total deadline applies
        owner: _Deadlines | None = None
        if self.first_at is not None or total_at is not None:
            global _last_deadlines
            owner = _last_deadlines  # (the loop of the last request, nearly always)
            if owner is None or owner.loop is not loop:
                owner = _deadlines.get(loop)
                if owner is None:
                    owner = _deadlines[loop] = _Deadlines(loop)
                _last_deadlines = owner
            owner.add(self)
        self.owner = owner

    def check(self, now: float) -> None:
        if self.fired is not None:
            return
        if not self.started and self.first_at is not None and now >= self.first_at:
            self.fired = "first"
        elif self.total_at is not None and now >= self.total_at:
            self.fired = "total"
            self.total_passed = True
        else:
            return
        if self.owner is not None:
            self.owner.watches.discard(self)
        if self.task is not None:
            self.cancelled = self.task
            self.task.cancel()

    def content_started(self) -> None:
        """The answer began: the first-token deadline no longer applies."""
        self.started = True

    def raise_if_fired(self) -> None:
        """In an ``except CancelledError``: raise the timeout if that is what it was."""
        if self.fired is None:
            return
        if self.cancelled is not None:
            self.cancelled.uncancel()  # the cancellation was ours: it becomes the timeout
            self.cancelled = None
        if self.fired == "first":
            raise ProviderTimeoutError(
                f"no answer within the first-token timeout ({self.first:g}s)",
                provider=self.provider,
            ) from None
        raise ProviderTimeoutError(
            f"the answer did not end within the total timeout ({self.total:g}s)",
            provider=self.provider,
        ) from None

    def stop(self) -> None:
        if self.owner is not None:
            self.owner.watches.discard(self)


def _task_getter(loop: asyncio.AbstractEventLoop) -> Callable[[], asyncio.Task[Any] | None]:
    """A function giving the task running on ``loop`` now: ``asyncio.current_task``,
    except on a Python whose one is written in Python (3.11), where asyncio's own table of
    running tasks is read directly (one C call instead of a Python one, per chunk)."""
    tasks = getattr(asyncio.tasks, "_current_tasks", None)
    if inspect.isfunction(asyncio.current_task) and isinstance(tasks, dict):
        return functools.partial(tasks.get, loop)
    return asyncio.current_task


#: upstream statuses that refuse the request itself (its fields, its size, its model)
_REFUSALS = frozenset({400, 404, 413, 422})


def _tell(observers: Sequence[RouterObserver], attempt: Attempt) -> None:
    """Give ``attempt`` to each observer; one that fails does not fail the request."""
    for observer in observers:
        try:
            observer.attempt_ended(attempt)
        except Exception:  # measuring must never break an answer
            _log.exception("router observer %r failed", observer)


def _naming(cls: type[AsyncGeneratorProvider]) -> type[ProviderModelMixin]:
    """The model-naming side of a provider class.

    Every routable provider mixes in :class:`ProviderModelMixin` (a provider module's
    class is ``class X(AsyncGeneratorProvider, ProviderModelMixin)``); the type system
    has no intersection type to say so in ``type[...]``, hence the cast.
    """
    return cls  # type: ignore[return-value]  # (a cast, without the call of one)


def _refused(exc: BaseException) -> bool:
    """Whether the upstream refused this request (a client error), rather than failed;
    an emulated answer that was unusable says nothing of the service's health either."""
    return (isinstance(exc, ResponseStatusError) and exc.status in _REFUSALS) or isinstance(
        exc, EmulationError
    )
