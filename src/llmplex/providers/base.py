"""The provider contract every service module implements.

A provider is a class used through class methods; its only required method is
``create_async_generator``, an *async generator* yielding ``str`` text deltas and typed
chunks (:mod:`llmplex.types`). Everything else — the sync iterator, the whole-answer
coroutine, model-name resolution, the base-URL override — is derived here.
"""

from __future__ import annotations

import asyncio
import difflib
import inspect
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from ..capabilities import EMULATABLE, TEXT_ONLY, Capabilities
from ..errors import InvalidRequestError, ModelNotFoundError
from ..request import LIMIT_FIELDS
from ..types import Chunk, JsonConversation, Messages

if TYPE_CHECKING:  # pragma: no cover
    from ..request import ChatRequest

__all__ = [
    "AsyncGeneratorProvider",
    "ProviderModelMixin",
    "BaseProvider",
    "run_cleanup",
    "create_upstream",
    "CLEANUP_TIMEOUT",
]

#: seconds an upstream cleanup (DELETE of a chat, cancel of a prediction) may take
CLEANUP_TIMEOUT = 5.0


class BaseProvider:
    """Class attributes describing a service, shared by every provider."""

    label: ClassVar[str] = ""
    url: ClassVar[str] = ""
    login_url: ClassVar[str | None] = None
    api_endpoint: ClassVar[str | None] = None
    working: ClassVar[bool] = False
    needs_auth: ClassVar[bool] = False
    supports_stream: ClassVar[bool] = True
    #: what the service can do beyond text (read by routing); ``supports_system_message``
    #: and ``supports_message_history`` are derived from it
    capabilities: ClassVar[Capabilities] = TEXT_ONLY
    supports_system_message: ClassVar[bool] = False
    supports_message_history: ClassVar[bool] = True
    #: Providers with server-side threads set this to their ``JsonConversation`` subclass;
    #: they then accept ``conversation=`` and ``return_conversation=True``.
    conversation_class: ClassVar[type[JsonConversation] | None] = None

    @classmethod
    def why_not_working(cls, options: Mapping[str, Any] | None = None) -> str | None:
        """``None`` when the provider is usable as configured (``options``: its configured
        options), else the reason it is not (``/v1/providers`` shows it)."""
        return None if cls.working else "marked not working"

    @classmethod
    def get_name(cls) -> str:
        """The provider's name: its class name (``"AllenAI"``)."""
        return cls.__name__

    @classmethod
    def env_base_url(cls) -> str | None:
        """``LLMPLEX_<NAME>_BASE_URL`` from the environment, if set."""
        return os.environ.get(f"LLMPLEX_{cls.get_name().upper()}_BASE_URL") or None

    @classmethod
    def resolve_base_url(cls, base_url: str | None, default: str) -> str:
        """The origin to talk to: ``base_url``, else the environment override, else
        ``default`` (the real service). Never ends with ``/``."""
        return (base_url or cls.env_base_url() or default).rstrip("/")


class ProviderModelMixin:
    """Model names: ``default_model``, ``models`` and ``model_aliases``."""

    default_model: ClassVar[str] = ""
    models: ClassVar[list[str]] = []
    model_aliases: ClassVar[dict[str, str]] = {}

    @classmethod
    def get_models(cls) -> list[str]:
        """Every model the provider serves (the default first)."""
        names = list(cls.models)
        if cls.default_model and cls.default_model not in names:
            names.insert(0, cls.default_model)
        return names

    @classmethod
    def accepts_model(cls, model: str) -> bool:
        """Whether a name outside ``models`` is still served (open-ended catalogues)."""
        return False

    @classmethod
    def get_model(cls, model: str | None) -> str:
        """Resolve a model name.

        ``""``/``None`` give ``default_model``; an alias gives its target; a known model
        gives itself; anything else raises :class:`ModelNotFoundError` listing the valid
        names and the closest matches.
        """
        if not model:
            return cls.default_model
        if model in cls.model_aliases:
            return cls.model_aliases[model]
        # (an open catalogue first: it needs no list built)
        if cls.accepts_model(model):
            return model
        models = cls.get_models()
        if model in models:
            return model
        known = models + [a for a in cls.model_aliases if a not in models]
        suggestions = difflib.get_close_matches(model, known, n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(suggestions)}?" if suggestions else ""
        raise ModelNotFoundError(
            f"model {model!r} not found.{hint} Valid models: {', '.join(known)}",
            provider=getattr(cls, "__name__", None),
            suggestions=suggestions,
        )


#: keyword arguments of create_async_generator that are llmplex's plumbing, not options
#: (``total_timeout``: the seconds left for the whole answer, given to a provider that
#: declares it so that it can tell its service, e.g. Replicate's ``Cancel-After``;
#: ``whole``: ask the service for the whole answer in one piece, not streamed, given to a
#: provider that declares it when nothing needs the answer streamed)
_PLUMBING = frozenset({"conversation", "return_conversation", "timeout", "total_timeout", "whole"})


class AsyncGeneratorProvider(BaseProvider):
    """A provider whose answer is an async stream of chunks.

    Options are the keyword-only parameters of ``create_async_generator``: that signature
    is the provider's declaration of what it takes (:meth:`accepted_options`). An
    implementation may end its signature with ``**kwargs`` only to refuse the rest through
    :meth:`reject_unknown`, first thing: nothing is silently ignored.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        caps = cls.__dict__.get("capabilities")
        if caps is not None:
            cls.supports_system_message = caps.system_message
            cls.supports_message_history = caps.message_history

    @classmethod
    def accepted_options(cls) -> frozenset[str]:
        """The options this provider takes (its keyword-only parameters, plumbing aside)."""
        cached = cls.__dict__.get("_accepted")
        if cached is None:
            function = getattr(cls.create_async_generator, "__func__", cls.create_async_generator)
            parameters = inspect.signature(function).parameters.values()
            cached = (
                frozenset(p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY)
                - _PLUMBING
            )
            cls._accepted = cached  # type: ignore[attr-defined]
        return cached

    @classmethod
    def takes_whole(cls) -> bool:
        """Whether ``create_async_generator`` takes ``whole`` (ask the service for the
        answer in one piece instead of a stream), and then its default ``timeout``."""
        cached = cls.__dict__.get("_takes_whole")
        if cached is None:
            function = getattr(cls.create_async_generator, "__func__", cls.create_async_generator)
            parameters = inspect.signature(function).parameters
            timeout = parameters.get("timeout")
            cached = (
                "whole" in parameters,
                None
                if timeout is None or timeout.default is inspect.Parameter.empty
                else timeout.default,
            )
            cls._takes_whole = cached  # type: ignore[attr-defined]
        return bool(cached[0])

    @classmethod
    def default_timeout(cls) -> float | None:
        """The default of ``create_async_generator``'s ``timeout`` (None: none or no such
        parameter)."""
        cls.takes_whole()
        default = cls.__dict__["_takes_whole"][1]
        return default if isinstance(default, (int, float)) else None

    @classmethod
    def takes_deadline(cls) -> bool:
        """Whether ``create_async_generator`` takes ``total_timeout`` (the seconds left for
        the answer), to pass on to its service."""
        cached = cls.__dict__.get("_takes_deadline")
        if cached is None:
            function = getattr(cls.create_async_generator, "__func__", cls.create_async_generator)
            cached = "total_timeout" in inspect.signature(function).parameters
            cls._takes_deadline = cached  # type: ignore[attr-defined]
        return cached

    @classmethod
    def reject_unknown(cls, options: Mapping[str, Any]) -> None:
        """Raise :class:`InvalidRequestError` for options this provider does not take (with
        a did-you-mean), instead of ignoring them."""
        if not options:
            return
        if options.get("stream") is True:  # g4f-style callers say so: it is a stream anyway
            options = {k: v for k, v in options.items() if k != "stream"}
            if not options:
                return
        name = next(iter(options))
        if name == "stream":
            raise InvalidRequestError(
                "create_async_generator always streams; create_async gives the whole answer",
                param=name,
                provider=cls.get_name(),
            )
        known = sorted(cls.accepted_options())
        suggestions = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
        hint = f" (did you mean {' or '.join(map(repr, suggestions))}?)" if suggestions else ""
        raise InvalidRequestError(
            f"{cls.get_name()} does not take the option {name!r}{hint}; it takes: "
            f"{', '.join(known)}",
            param=name,
            suggestions=suggestions,
            provider=cls.get_name(),
        )

    @classmethod
    def capabilities_for(cls, model: str | None) -> Capabilities:
        """What the service can do with ``model`` (routing asks per route). By default
        :attr:`capabilities`; a provider whose models differ (some with native tools,
        some text-only) overrides this, answering synchronously from what it knows (a
        built-in table, a cached model list)."""
        return cls.capabilities

    @classmethod
    def missing(
        cls, request: ChatRequest, emulate: bool = False, model: str | None = None
    ) -> list[tuple[str, str]]:
        """What of ``request`` this provider cannot serve (with ``model``, when given):
        ``(param, need)`` pairs, where ``need`` is a capability (``"tools"``,
        ``"images"``...) or the field's own name. Empty when it can serve all of it. With
        ``emulate``, what llmplex can emulate (tool calls, JSON output: :func:`emulated`)
        does not count as missing."""
        if not request.fields and not request.needs and not request.route_options:
            return []
        caps = cls.capabilities_for(model)
        accepted = cls.accepted_options()
        consumed = cls.emulated(request, model) if emulate else ()
        out: list[tuple[str, str]] = []
        for need, param in request.needs.items():
            if not caps.has(need) and need not in consumed:
                out.append((param, need))
        seen = {param for param, _ in out}
        skip = emulated_fields(consumed) if consumed else ()
        for name in (*request.fields, *request.route_options):
            if name in seen or name in LIMIT_FIELDS or name in skip:
                continue
            if name not in accepted or name in caps.unsupported:
                out.append((name, name))
        return out

    @classmethod
    def why_missing(cls, param: str, model: str | None) -> str | None:
        """Why ``model`` cannot take ``param`` (:meth:`missing` listed it), when the
        provider can say more than that (e.g. the model's own inputs); None otherwise."""
        return None

    @classmethod
    def emulated(cls, request: ChatRequest, model: str | None = None) -> frozenset[str]:
        """The needs of ``request`` llmplex would emulate on this provider (with
        ``model``): ``"tools"``, ``"json_object"``/``"json_schema"`` where its service
        lacks them."""
        if not request.needs:
            return frozenset()
        caps = cls.capabilities_for(model)
        return frozenset(
            need for need in request.needs if need in EMULATABLE and not caps.has(need)
        )

    @classmethod
    def create_async_generator(
        cls, model: str, messages: Messages, **kwargs: Any
    ) -> AsyncIterator[Chunk]:
        """Stream the answer: ``async for chunk in P.create_async_generator(model, messages)``.

        Implementations are ``async def`` generators; they yield ``str`` deltas and typed
        chunks, and delete whatever they created upstream in ``finally``.
        """
        raise NotImplementedError

    @classmethod
    def create_completion(
        cls, model: str, messages: Messages, stream: bool = True, **kwargs: Any
    ) -> Iterator[Chunk]:
        """The same stream for synchronous code (works inside a running event loop).

        With ``stream=False`` the text arrives as one string, followed by the typed chunks.
        """
        from ..bridge import iterate

        chunks = iterate(lambda: cls.create_async_generator(model, messages, **kwargs))
        if stream:
            return chunks
        return iter(_collect(list(chunks)))

    @classmethod
    async def create_async(cls, model: str, messages: Messages, **kwargs: Any) -> str:
        """The whole answer text."""
        parts = []
        async for chunk in cls.create_async_generator(model, messages, **kwargs):
            if isinstance(chunk, str):
                parts.append(chunk)
        return "".join(parts)


def _collect(chunks: list[Chunk]) -> list[Chunk]:
    text = "".join(c for c in chunks if isinstance(c, str))
    return [text, *(c for c in chunks if not isinstance(c, str))]


def emulated_fields(consumed: frozenset[str]) -> frozenset[str]:
    """The request fields emulation takes over (they are not sent to the service)."""
    names: set[str] = set()
    if "tools" in consumed:
        # not the legacy functions / function_call: their answers have another shape
        names |= {"tools", "tool_choice", "parallel_tool_calls"}
    if "json_object" in consumed or "json_schema" in consumed:
        names.add("response_format")
    return frozenset(names)


async def run_cleanup(cleanup: Awaitable[Any], timeout: float = CLEANUP_TIMEOUT) -> None:
    """Run upstream cleanup (a DELETE, a cancel) to its end, bounded by ``timeout``.

    It runs as its own task, shielded: when the caller is cancelled meanwhile (even more
    than once), the cleanup still completes — it needs the caller's session, which closes
    once this returns — and the cancellation is re-raised afterwards. Its own errors and a
    timeout (``TimeoutError``) are raised to the caller, who decides whether they matter.
    """
    task = asyncio.ensure_future(asyncio.wait_for(cleanup, timeout))
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.done():
                break
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    if not task.cancelled():
        task.result()


T = TypeVar("T")


async def create_upstream(
    create: Awaitable[T], undo: Callable[[T], Awaitable[Any]], timeout: float = CLEANUP_TIMEOUT
) -> T:
    """Await ``create``, a request that makes something upstream (a chat, a prediction),
    and return its result.

    A caller cancelled while the request is in flight cannot know whether the server
    already made the thing: the request is left to finish (within ``timeout`` seconds),
    ``undo(result)`` removes what it made, and then the cancellation goes on. The
    request's own errors are raised as usual: nothing was made.
    """
    task = asyncio.ensure_future(create)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        if task.cancelled():
            raise  # the request itself was cancelled, not only its caller

        async def finish_then_undo() -> None:
            try:
                result = await task
            except Exception:  # it failed: nothing to undo
                return
            await undo(result)

        try:
            await run_cleanup(finish_then_undo(), timeout)
        except Exception:  # a timeout or failed undo must not hide the cancellation
            pass
        raise
