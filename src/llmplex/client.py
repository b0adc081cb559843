"""``Client`` and ``AsyncClient``: every provider behind the OpenAI SDK's shape.

>>> client = AsyncClient()
>>> answer = await client.chat.completions.create(model="openai:gpt-4o-mini", messages="Hi")
>>> answer.choices[0].message.content
>>> async for chunk in await client.chat.completions.create(model=..., messages=..., stream=True):
...     print(chunk.choices[0].delta.content or "", end="")

Model names are resolved by the :class:`~llmplex.routing.Router` (``"provider:model"``,
``provider=``, or a bare name with fallback across providers). ``conversation=`` keeps a
multi-turn exchange in a :mod:`conversation store <llmplex.conversations>`.
"""

from __future__ import annotations

import asyncio
import os
import time
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from types import AsyncGeneratorType
from typing import TYPE_CHECKING, Any, Literal, Protocol, overload

from .conversations.base import Conversation, ConversationStore
from .deadlines import DEADLINE_OPTIONS, check_deadline, default_deadline
from .embeddings import AsyncEmbeddings
from .errors import InvalidRequestError, ModelNotFoundError, ResponseError
from .http.pool import bind_pool, unbind_pool
from .limits import MAX_ANSWER_CHARS, OutputLimiter, estimate_tokens
from .objects import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessage,
    ChatCompletionMessageToolCall,
    Choice,
    ChoiceDelta,
    ChoiceDeltaToolCall,
    ChoiceDeltaToolCallFunction,
    ChoiceLogprobs,
    ChunkChoice,
    CompletionUsage,
    Function,
    Model,
    ModelList,
)
from .prompt import validate_messages
from .providers.base import (
    AsyncGeneratorProvider,
    ProviderModelMixin,
    emulated_fields,
    run_cleanup,
)
from .request import ChatRequest
from .routing import Route, Router
from .types import (
    ChoiceText,
    Chunk,
    FinishReason,
    JsonConversation,
    Logprobs,
    Messages,
    ReasoningDelta,
    ReasoningSignature,
    RefusalDelta,
    ResponseMeta,
    ToolCallDelta,
    Usage,
)

if TYPE_CHECKING:  # pragma: no cover
    from .config import Config
    from .http.pool import ConnectionPool

__all__ = ["AsyncClient", "Client", "AsyncStream", "Stream", "MAX_ANSWER_CHARS"]


def _settings(
    config: Config | str | os.PathLike[str] | bool | None, by_default: bool
) -> Config | None:
    """The configuration an AsyncClient uses (see its ``config`` argument)."""
    if config is False or (config is None and not by_default):
        return None
    from .config import Config, load_config

    if isinstance(config, Config):
        return config
    if config is None or config is True:
        return load_config()
    return load_config(config)


class AsyncClient:
    """The async client.

    ``provider_options`` gives per-provider defaults, keyed by provider name, e.g.
    ``{"Replicate": {"api_key": "..."}, "AllenAI": {"base_url": "http://127.0.0.1:8001"}}``.
    ``store`` is a :class:`ConversationStore` or a SQLite file path (default: the SQLite
    file in the user's data directory, opened on first use). ``proxy`` and ``timeout``
    apply to every request unless a call overrides them.

    ``config``: the settings the CLI reads (``config.toml`` and the ``LLMPLEX_*`` and key
    variables, :mod:`llmplex.config`): its ``[router]``, ``[providers.X]`` options, proxy,
    timeout and deadlines. By default they are read here, at construction (an absent file
    is fine), unless ``router`` or ``provider_options`` is given: a caller that builds its
    own routing (tests, the emulated services) is not surprised by a user's file.
    ``config=True`` reads them anyway, ``config=False`` never; a path reads that file; a
    :class:`~llmplex.config.Config` is used as it is. Explicit arguments win over it.
    """

    def __init__(
        self,
        *,
        router: Router | None = None,
        store: ConversationStore | str | None = None,
        provider_options: Mapping[str, Mapping[str, Any]] | None = None,
        proxy: str | None = None,
        timeout: float | None = None,
        first_token_timeout: float | None = None,
        total_timeout: float | None = None,
        local_servers: Literal["named", "configured"] = "named",
        config: Config | str | os.PathLike[str] | bool | None = None,
    ) -> None:
        settings = _settings(config, router is None and provider_options is None)
        if settings is not None:
            if router is None and settings.router:
                router = settings.make_router()
            if provider_options is None:
                provider_options = settings.providers
            proxy = settings.proxy if proxy is None else proxy
            timeout = settings.timeout if timeout is None else timeout
            if first_token_timeout is None:
                first_token_timeout = settings.first_token_timeout
            if total_timeout is None:
                total_timeout = settings.total_timeout
        if local_servers not in ("named", "configured"):
            raise InvalidRequestError(
                "local_servers must be 'named' or 'configured'", param="local_servers"
            )
        #: local servers (Ollama, vLLM, llama.cpp, LM Studio) are never chosen for a bare
        #: model name unless configured; "named": a call naming one ("ollama:llama3.2")
        #: reaches it anyway; "configured": only configured ones are ever reached (the
        #: server's policy: its HTTP clients must not make it probe local ports)
        self.local_servers = local_servers
        self.router = router or Router()
        self._store = store
        self.provider_options = {k.lower(): dict(v) for k, v in (provider_options or {}).items()}
        self.proxy = proxy
        self.timeout = timeout
        #: deadlines (:mod:`llmplex.deadlines`): None here means the environment's or default
        self.first_token_timeout = (
            default_deadline("first_token_timeout")
            if first_token_timeout is None
            else check_deadline("first_token_timeout", first_token_timeout)
        )
        self.total_timeout = (
            default_deadline("total_timeout")
            if total_timeout is None
            else check_deadline("total_timeout", total_timeout)
        )
        # Deadlines a provider's options set are the router's, not the provider's.
        self._route_deadlines: dict[str, dict[str, float | None]] = {}
        for name, options in self.provider_options.items():
            for option in DEADLINE_OPTIONS:
                if option in options:
                    self._route_deadlines.setdefault(name, {})[option] = check_deadline(
                        f"{name}.{option}", options.pop(option)
                    )
        self._pool: ConnectionPool | None = None  # keep-alive connections, when kept
        self.chat = _AsyncChat(self)
        self.models = _AsyncModels(self)
        self.conversations = _AsyncConversations(self)
        self.embeddings = AsyncEmbeddings(self)

    def __repr__(self) -> str:  # provider_options may hold keys: never shown
        return f"AsyncClient(providers={sorted(self.provider_options)!r})"

    async def __aenter__(self) -> AsyncClient:
        """``async with AsyncClient() as client:`` keeps connections alive between the
        client's calls inside the block (one pool, closed on exit): less CPU and latency
        per call. Without the block, every call opens and closes its own connection."""
        from .http.pool import ConnectionPool

        if self._pool is None or self._pool.closed:
            self._pool = ConnectionPool()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the kept-alive connections; later calls open their own again."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    def configured(self, provider: type[AsyncGeneratorProvider]) -> bool:
        """Whether the user configured ``provider``: options for it (``provider_options``,
        config.toml), its base-URL or key variable, or the router's order or aliases."""
        name = provider.get_name().lower()
        if name in self.provider_options or provider.env_base_url():
            return True
        from .providers import key_variables  # the spec's, so the same for every provider

        if any(os.environ.get(v) for v in key_variables(provider.get_name())):
            return True
        router = self.router
        return any(n.lower() == name for n in router.order) or any(
            str(t).split(":", 1)[0].lower() == name
            for targets in router.aliases.values()
            for t in targets
        )

    def _reachable(self, routes: list[Route]) -> list[Route]:
        """``routes`` without the unconfigured local servers this client may not reach:
        nothing is sent to an endpoint the user did not configure or name."""
        named_ok = self.local_servers == "named"
        kept = [
            r
            for r in routes
            if not getattr(r.provider, "local", False)
            or (named_ok and r.named)
            or self.configured(r.provider)
        ]
        if kept:
            return kept
        name = routes[0].name
        raise InvalidRequestError(
            f"{name} is a local server that is not configured: set "
            f"LLMPLEX_{name.upper()}_BASE_URL or add [providers.{name}] to config.toml"
            + (
                ""
                if named_ok
                else " (this server only reaches the local servers its operator configured)"
            ),
            param="model",
            provider=name,
        )

    def _key(self, provider: type[AsyncGeneratorProvider]) -> tuple[str | None, str | None]:
        """The key ``provider`` would use (its options', else its variable's) and the
        name of that variable."""
        from .config import _key_env

        name = provider.get_name()
        key_env = getattr(provider, "api_key_env", None) or _key_env(name)
        key = self.provider_options.get(name.lower(), {}).get("api_key")
        return key or (os.environ.get(key_env) if key_env else None), key_env

    def unavailable(self, provider: type[AsyncGeneratorProvider]) -> str | None:
        """Why ``provider`` cannot serve a request now, or None when it can (working, and
        configured as far as it needs: credentials, a base URL, a local server set up)."""
        name = provider.get_name()
        options = self.provider_options.get(name.lower(), {})
        if not self.router.include_not_working:
            why = provider.why_not_working(options)  # "marked not working", or its own
            if why is not None:
                return why
        if getattr(provider, "local", False) and not self.configured(provider):
            return (
                f"a local server that is not configured (set LLMPLEX_{name.upper()}"
                f"_BASE_URL or add [providers.{name}])"
            )
        if hasattr(provider, "default_base_url") and not (
            options.get("base_url") or provider.env_base_url() or provider.default_base_url
        ):
            return f"no base URL (set LLMPLEX_{name.upper()}_BASE_URL)"
        if provider.needs_auth:
            key, key_env = self._key(provider)
            if not (
                key
                or options.get("cookies")
                or options.get("headers")
                or options.get("captcha_token")
            ):
                return (
                    f"no API key (set {key_env})"
                    if key_env
                    else f"no credentials (add [providers.{name}])"
                )
        return None

    def _discovery(self, provider: type[Any]) -> dict[str, Any] | None:
        """How to ask ``provider``'s upstream for its models, when it is an
        OpenAI-compatible one the user configured and may reach; else None."""
        if (
            not hasattr(provider, "fetch_models")
            or not self.configured(provider)
            or self.unavailable(provider) is not None
        ):
            return None
        options = self.provider_options.get(provider.get_name().lower(), {})
        return {
            "base_url": provider._base(options.get("base_url")),
            "api_key": self._key(provider)[0],
            "headers": options.get("headers"),
            "proxy": options.get("proxy") or self.proxy,
        }

    async def _discover(self, *, stale_only: bool = False) -> int:
        """Refresh the discovered model lists of the configured OpenAI-compatible
        providers (those not fresh; all at once, each within its short deadline).
        Returns how many upstreams were asked."""
        cache = self.router.discovered
        targets = []
        for cls in self.router.provider_classes():
            target = self._discovery(cls)
            if target is None:
                cache.forget(cls.get_name())
            else:
                targets.append((cls, target))
        if stale_only:
            targets = [
                (cls, t)
                for cls, t in targets
                if not cache.fresh(
                    cache.key(cls.get_name(), t["base_url"], t["api_key"], t["headers"])
                )
            ]
        if not targets:
            return 0
        asked = await asyncio.gather(*(cache.discover(cls, **t) for cls, t in targets))
        return sum(asked)

    async def _resolve(self, model: str | None, provider: Any) -> list[Route]:
        """The router's routes for ``model``; a bare name no provider lists is looked up
        again after discovering the lists that are not fresh (the miss path only)."""
        router = self.router
        try:
            return router.resolve(model, provider)
        except ModelNotFoundError:
            # Only a bare name: "allenai:unknown" is that provider's to refuse.
            if (
                provider is None
                and model
                and router._split_prefix(model)[0] is None
                and await self._discover(stale_only=True)
            ):
                return router.resolve(model, provider)
            raise

    @property
    def store(self) -> ConversationStore:
        if not isinstance(self._store, ConversationStore):
            from .conversations.sqlite import SQLiteStore

            self._store = SQLiteStore(self._store)
        return self._store


class _AsyncChat:
    def __init__(self, client: AsyncClient) -> None:
        self.completions = _AsyncCompletions(client)


class _AsyncCompletions:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    @overload
    async def create(
        self, *, model: str | None = ..., messages: Any, stream: Literal[False] = ..., **kwargs: Any
    ) -> ChatCompletion: ...

    @overload
    async def create(
        self, *, model: str | None = ..., messages: Any, stream: Literal[True], **kwargs: Any
    ) -> AsyncStream: ...

    @overload
    async def create(
        self, *, model: str | None = ..., messages: Any, stream: bool, **kwargs: Any
    ) -> ChatCompletion | AsyncStream: ...

    async def create(
        self,
        *,
        model: str | None = None,
        messages: Any,
        stream: bool = False,
        provider: Any = None,
        conversation: Conversation | str | None = None,
        timeout: float | None = None,
        first_token_timeout: float | None = None,
        total_timeout: float | None = None,
        emulate: bool | None = None,
        **kwargs: Any,
    ) -> ChatCompletion | AsyncStream:
        """Create a chat completion (``stream=False``) or a stream of chunks (``True``).

        Takes every OpenAI Chat Completions field (``temperature``, ``tools``,
        ``tool_choice``, ``response_format``, ``n``, ``logprobs``, ``reasoning_effort``,
        ``extra_body``...) and the options providers declare (``top_k``,
        ``system_prompt``...). A field is honoured by the route that serves the call, or
        refused with :class:`InvalidRequestError` naming it; an unknown keyword is an error
        with a did-you-mean (:mod:`llmplex.request`).

        ``api_key``, ``base_url``, ``cookies``, ``headers`` and ``proxy`` apply only to a
        call that names one provider (``"groq:llama-3.1-8b-instant"``, ``provider="Groq"``);
        in a fallback chain every provider uses its own configuration (``provider_options``).

        With ``conversation=`` (a :class:`Conversation` or its id), ``messages`` holds only
        the new turn; the stored history is sent before it, and the answer is saved.
        Without ``model`` (and ``provider``), the conversation's last model is used.

        ``first_token_timeout`` / ``total_timeout``: this call's deadlines (seconds; see
        :mod:`llmplex.deadlines`), over the providers' and the client's.

        ``emulate``: whether ``tools`` and a JSON ``response_format`` may be emulated
        through the prompt on a provider whose service lacks them (:mod:`llmplex.emulation`;
        the answer's ``emulated`` field then says so). ``None``: the router's setting (on by
        default); ``False`` makes such a request an error on those providers.
        """
        client = self._client
        request = ChatRequest.build(model, messages, stream=stream, emulate=emulate, **kwargs)
        deadlines = {
            name: check_deadline(name, value)
            for name, value in (
                ("first_token_timeout", first_token_timeout),
                ("total_timeout", total_timeout),
            )
            if value is not None
        }
        record = None
        if conversation is not None:
            conversation_id = (
                conversation.id if isinstance(conversation, Conversation) else str(conversation)
            )
            record = await asyncio.to_thread(client.store.get, conversation_id)
            if not model and provider is None:
                model = record.model  # a conversation goes on with the model it used
        router = client.router
        routes = router.capable(client._reachable(await client._resolve(model, provider)), request)
        if request.route_options and len({r.name for r in routes}) > 1:
            name = next(iter(request.route_options))
            raise InvalidRequestError(
                f"{name} applies to one provider, but this call may be served by "
                f"{', '.join(dict.fromkeys(r.name for r in routes))}: name one provider "
                "('provider:model' or provider=), or give each its own in provider_options",
                param=name,
            )
        run = _Run(
            client,
            routes,
            request,
            record,
            model or routes[0].model,
            timeout or client.timeout,
            deadlines,
        )
        if stream:
            return AsyncStream(run.chunks())
        return await run.complete()


class _Choice:
    """What one choice of an answer has gathered so far."""

    __slots__ = (
        "text",
        "reasoning",
        "refusal",
        "calls",
        "logprobs",
        "refusal_logprobs",
        "finish_reason",
        "started",
    )

    def __init__(self) -> None:
        self.text: list[str] = []
        self.reasoning: list[str] = []
        self.refusal: list[str] = []
        self.calls: dict[int, list[Any]] = {}  # index -> [id, name, argument pieces]
        self.logprobs: list[dict[str, Any]] | None = None
        self.refusal_logprobs: list[dict[str, Any]] | None = None
        self.finish_reason: str | None = None
        self.started = False  # a chunk with role "assistant" was streamed

    def add_call(self, delta: ToolCallDelta) -> None:
        call = self.calls.get(delta.index)
        if call is None:
            self.calls[delta.index] = [delta.id, delta.name, [delta.arguments]]
            return
        call[0] = call[0] or delta.id
        call[1] = call[1] or delta.name
        call[2].append(delta.arguments)

    def add_logprobs(self, event: Logprobs) -> None:
        if event.content_logprobs:
            if self.logprobs is None:
                self.logprobs = []
            self.logprobs.extend(event.content_logprobs)
        if event.refusal_logprobs:
            if self.refusal_logprobs is None:
                self.refusal_logprobs = []
            self.refusal_logprobs.extend(event.refusal_logprobs)

    def tool_calls(self) -> list[ChatCompletionMessageToolCall] | None:
        if not self.calls:
            return None
        return [
            ChatCompletionMessageToolCall(
                call[0] or f"call_{index}", Function(call[1] or "", "".join(call[2]))
            )
            for index, call in sorted(self.calls.items())
        ]

    def message(self) -> ChatCompletionMessage:
        calls = self.tool_calls()
        text = "".join(self.text)
        return ChatCompletionMessage(
            "assistant",
            text if text or not (calls or self.refusal) else None,
            "".join(self.refusal) or None,
            calls,
            "".join(self.reasoning) or None,
        )

    def choice_logprobs(self) -> ChoiceLogprobs | None:
        if self.logprobs is None and self.refusal_logprobs is None:
            return None
        return ChoiceLogprobs(self.logprobs, self.refusal_logprobs)


def _take_logprobs(pending: dict[int, Logprobs], index: int) -> ChoiceLogprobs | None:
    """The logprobs waiting in ``pending`` for choice ``index`` (taken out), as a chunk's."""
    found = pending.pop(index, None)
    if found is None:
        return None
    return ChoiceLogprobs(found.content_logprobs, found.refusal_logprobs)


class _Run:
    """One request: fallback stream, limits, usage, conversation bookkeeping."""

    def __init__(
        self,
        client: AsyncClient,
        routes: list[Route],
        request: ChatRequest,
        record: Conversation | None,
        model: str,
        timeout: float | None,
        deadlines: dict[str, float | None] | None = None,
    ) -> None:
        self.client = client
        self.deadlines = deadlines or {}
        self.routes = routes
        self.request = request
        self.new_messages = [dict(m) for m in request.messages]
        self.record = record
        self.history = _messages((record.messages if record else []) + self.new_messages)
        self.model = model
        self.timeout = timeout
        self.limiter: OutputLimiter | None = None  # for the route now answering, if needed
        self.id = "chatcmpl-" + os.urandom(12).hex()  # as random as uuid4's hex, cheaper
        self.created = int(time.time())
        self.provider = routes[0].name
        self.choices: dict[int, _Choice] = {0: _Choice()}
        self.usage: Usage | None = None
        self.meta: ResponseMeta | None = None
        self.state: dict[str, Any] | None = None
        #: what llmplex emulates for the route answering ("tools", "response_format")
        self.emulated: list[str] | None = None
        #: when the answer began (its total deadline counts from here)
        self.started_at = time.monotonic()

    def _open(self, route: Route) -> AsyncIterator[Chunk]:
        cls = route.provider
        caps = cls.capabilities_for(route.model)
        request = self.request
        kwargs = dict(self.client.provider_options.get(route.name.lower(), ()))
        kwargs.update(request.kwargs_for(caps.max_tokens, caps.stop, cls.accepted_options()))
        if self.client.proxy is not None:
            kwargs.setdefault("proxy", self.client.proxy)
        if self.timeout is not None:
            kwargs["timeout"] = self.timeout
        if cls.takes_deadline():
            left = self._time_left(route)
            if left is not None:
                kwargs["total_timeout"] = left
        kwargs.update(request.route_options)  # one provider only (checked by create)
        # The client enforces the limits this service does not (and only those).
        max_tokens = None if caps.max_tokens else request.max_tokens
        stop = None if caps.stop else request.fields.get("stop")
        limiter = OutputLimiter(max_tokens, stop) if max_tokens or stop else None
        self.limiter = limiter if limiter is not None and limiter.active else None
        conversation_class = cls.conversation_class
        if self.record is not None and conversation_class is not None:
            state = self.record.state_for(route.name)
            if state is not None:
                kwargs["conversation"] = conversation_class.from_dict(state)
            kwargs["return_conversation"] = True
        router = self.client.router
        emulated = (
            cls.emulated(request, route.model)
            if (router.emulate if request.emulate is None else request.emulate)
            else None
        )
        if not emulated:
            self.emulated = None
            if not request.stream and self.limiter is None and self._whole(route, kwargs):
                kwargs["whole"] = True
            return cls.create_async_generator(route.model, self.history, **kwargs)
        # Tools / JSON output through the prompt (llmplex.emulation): the fields it takes
        # over are not sent; the provider gets rendered text messages.
        from .emulation.stream import emulate, plan

        for name in emulated_fields(emulated):
            kwargs.pop(name, None)
        how = plan(request.fields, emulated, router.emulation_retries)
        self.emulated = list(how.features)

        def open_stream(
            messages: list[dict[str, str]], state: JsonConversation | None
        ) -> AsyncIterator[Chunk]:
            if state is not None:
                kwargs["conversation"] = state
            return cls.create_async_generator(route.model, _messages(messages), **kwargs)

        return emulate(how, self.history, open_stream, route.name)

    def _whole(self, route: Route, kwargs: dict[str, Any]) -> bool:
        """Whether ``route``'s provider may be asked for the answer in one piece (not
        streamed) without changing what the caller sees: it can (``whole``), and no wait
        that a stream bounds but one piece would not could end before the answer's own
        deadline does: the first-token deadline and the per-read ``timeout`` (a service
        answering in one piece sends nothing until it is done). With the defaults (first
        token 300 s, reads 120 s, answer 1800 s) the answer stays streamed."""
        cls = route.provider
        if not cls.takes_whole() or "whole" in kwargs:
            return False
        left = self._time_left(route)
        # each wait must be None or last at least as long as the answer may (first-token
        # first: with the defaults it decides, and the read timeout need not be looked up)
        first = self._first_token_timeout(route)
        if first is not None and (left is None or first < left):
            return False
        read = kwargs["timeout"] if "timeout" in kwargs else cls.default_timeout()
        return read is None or (left is not None and read >= left)

    def _time_left(self, route: Route) -> float | None:
        """Seconds left for the answer on ``route`` (the total deadline, and the route's
        own), for a provider that tells its service (None: no deadline)."""
        total = self.deadlines.get("total_timeout", self.client.total_timeout)
        left = None if total is None else total - (time.monotonic() - self.started_at)
        own = self._attempt_timeout(route)
        if own is not None and (left is None or own < left):
            left = own
        return None if left is None else max(left, 0.001)

    def _first_token_timeout(self, route: Route) -> float | None:
        if "first_token_timeout" in self.deadlines:
            return self.deadlines["first_token_timeout"]
        client = self.client
        if not client._route_deadlines:  # (the common case: no provider sets its own)
            return client.first_token_timeout
        own = client._route_deadlines.get(route.name.lower(), {})
        return own.get("first_token_timeout", client.first_token_timeout)

    def _attempt_timeout(self, route: Route) -> float | None:
        """A provider's own total_timeout (its options), unless the call set one."""
        if "total_timeout" in self.deadlines or not self.client._route_deadlines:
            return None
        return self.client._route_deadlines.get(route.name.lower(), {}).get("total_timeout")

    def _choice(self, index: int) -> _Choice:
        choice = self.choices.get(index)
        if choice is None:
            choice = self.choices[index] = _Choice()
        return choice

    def chunks(self) -> AsyncGenerator[ChatCompletionChunk, None]:
        """The answer's chunks (``create(stream=True)``)."""
        return self._answer(True)

    async def _answer(self, streamed: bool) -> AsyncGenerator[ChatCompletionChunk, None]:
        """Run the request: the answer's text (after limits) and content events gather in
        :attr:`choices`; the provider, finish reasons, usage, model id and state are noted
        as they pass. ``streamed``: yield each piece as a chunk, then the closing ones;
        else yield nothing (:meth:`complete` reads the result), so that the whole answer
        runs in one step of this generator, not one per event."""
        client = self.client
        router = client.router
        # The client's pool (if it keeps one) is bound around each step of the stream, the
        # steps that open connections, whichever task iterates us; not between them.
        pool = client._pool
        self.started_at = time.monotonic()
        stream = router.stream(
            self.routes[: router.max_routes],
            self._open,
            model=self.model,
            first_token_timeout=self._first_token_timeout,
            total_timeout=self.deadlines.get("total_timeout", client.total_timeout),
            attempt_timeout=self._attempt_timeout,
        )
        # an async generator, though routing.py annotates it AsyncIterator: it has aclose()
        assert isinstance(stream, AsyncGeneratorType)  # (a class: no ABC check's call)
        step = stream.__anext__
        first = self.choices[0]
        current = None
        size = 0  # characters of text so far: an answer's memory is bounded
        pending: dict[int, Logprobs] = {}  # streamed logprobs wait for the text they describe
        try:
            while True:
                token = None if pool is None else bind_pool(pool)
                try:
                    route, chunk = await step()
                except StopAsyncIteration:
                    break
                finally:
                    if token is not None:
                        unbind_pool(token)
                if route is not current:  # changes only on fallback: not per chunk
                    current = route
                    self.provider = route.name
                if type(chunk) is str:
                    limiter = self.limiter
                    if limiter is not None:
                        chunk = limiter.feed(chunk)
                    if chunk:
                        size += len(chunk)
                        if size > MAX_ANSWER_CHARS:
                            raise ResponseError(
                                f"answer too long: over {MAX_ANSWER_CHARS} characters",
                                provider=self.provider,
                            )
                        first.text.append(chunk)
                        if streamed:
                            yield self._text_chunk(chunk, pending)
                    if limiter is not None and limiter.done:
                        break  # closing the stream cancels the upstream request
                elif isinstance(chunk, FinishReason):
                    self._choice(chunk.choice).finish_reason = chunk.reason
                elif isinstance(chunk, Usage):
                    self.usage = chunk
                elif isinstance(chunk, ResponseMeta):
                    self.meta = chunk
                elif isinstance(chunk, JsonConversation):
                    self.state = chunk.get_dict()
                elif isinstance(chunk, _ANSWER_EVENTS):
                    choice = self._choice(chunk.choice)
                    if isinstance(chunk, ToolCallDelta):
                        choice.add_call(chunk)
                    elif isinstance(chunk, ReasoningDelta):
                        choice.reasoning.append(chunk.text)
                    elif isinstance(chunk, RefusalDelta):
                        choice.refusal.append(chunk.text)
                    elif isinstance(chunk, ChoiceText):
                        choice.text.append(chunk.text)
                    elif isinstance(chunk, ReasoningSignature):
                        pass  # streamed only (Anthropic's route of the server reads it)
                    else:
                        choice.add_logprobs(chunk)
                    if streamed:
                        if isinstance(chunk, Logprobs):
                            pending[chunk.choice] = chunk
                        else:
                            yield self._event_chunk(chunk, choice, pending)
                # any other event (a third-party provider's own) has nothing to show here
        except (Exception, asyncio.CancelledError, GeneratorExit):
            # The turn failed, was cancelled or left early: the user's message is kept,
            # with what came of the answer marked incomplete, so continuing loses nothing.
            if self.record is not None:
                await run_cleanup(self._save(failed=True))
            raise
        finally:
            # cleanup requests (a DELETE, a cancel) may reuse a connection
            token = None if pool is None else bind_pool(pool)
            try:
                await stream.aclose()
            finally:
                if token is not None:
                    unbind_pool(token)
        limiter = self.limiter
        if limiter is not None:
            tail = limiter.finish()
            if tail:
                first.text.append(tail)
                if streamed:
                    yield self._text_chunk(tail, pending)
            if limiter.reason:
                first.finish_reason = limiter.reason
        await self._save()
        if streamed:
            for chunk in self._closing_chunks(pending):
                yield chunk

    def _text_chunk(self, text: str, pending: dict[int, Logprobs]) -> ChatCompletionChunk:
        """The chunk of a piece of the first choice's text."""
        delta = ChoiceDelta(text)
        first = self.choices[0]
        if not first.started:
            first.started = True
            delta.role = "assistant"
        logprobs = _take_logprobs(pending, 0) if pending else None
        choices = [ChunkChoice(delta, None, 0, logprobs)]
        # (what _chunk does, without its call: this runs per chunk)
        meta = self.meta
        if meta is None:
            return ChatCompletionChunk(
                self.id, self.created, self.model, self.provider, choices, emulated=self.emulated
            )
        return ChatCompletionChunk(
            self.id,
            self.created,
            meta.model or self.model,
            self.provider,
            choices,
            system_fingerprint=meta.system_fingerprint,
            service_tier=meta.service_tier,
            emulated=self.emulated,
        )

    def _event_chunk(
        self, event: _AnswerEvent, choice: _Choice, pending: dict[int, Logprobs]
    ) -> ChatCompletionChunk:
        """The chunk of an answer event (not a Logprobs: those wait in ``pending``)."""
        index = event.choice
        if isinstance(event, ToolCallDelta):
            delta = ChoiceDelta(
                tool_calls=[
                    ChoiceDeltaToolCall(
                        event.index,
                        event.id,
                        ChoiceDeltaToolCallFunction(event.name, event.arguments),
                        "function" if event.id or event.name else None,
                    )
                ]
            )
        elif isinstance(event, ReasoningDelta):
            delta = ChoiceDelta(reasoning_content=event.text)
        elif isinstance(event, RefusalDelta):
            delta = ChoiceDelta(refusal=event.text)
        elif isinstance(event, ReasoningSignature):
            delta = ChoiceDelta(reasoning_signature=event.signature)
        else:
            assert isinstance(event, ChoiceText)
            delta = ChoiceDelta(event.text)
        if not choice.started:
            choice.started = True
            delta.role = "assistant"
        logprobs = _take_logprobs(pending, index) if pending else None
        return self._chunk([ChunkChoice(delta, None, index, logprobs)])

    def _closing_chunks(self, pending: dict[int, Logprobs]) -> list[ChatCompletionChunk]:
        """The last chunk of each choice (its finish reason; usage with the last one)."""
        out = []
        last = sorted(self.choices)[-1]
        for index in sorted(self.choices):
            choice = self.choices[index]
            done = ChunkChoice(
                ChoiceDelta(
                    role=None if choice.started else "assistant",
                    content=None if choice.started else "",
                ),
                choice.finish_reason or _default_finish(choice),
                index,
                _take_logprobs(pending, index),
            )
            if index != last:
                out.append(self._chunk([done]))
            else:
                out.append(
                    self._chunk(
                        [done],
                        usage=self.usage_object(),
                        conversation_id=self.record.id if self.record else None,
                    )
                )
        return out

    @property
    def answer_model(self) -> str:
        """The model id to report: the upstream's own, else the name the route used."""
        meta = self.meta
        return meta.model if meta is not None and meta.model else self.model

    def usage_object(self) -> CompletionUsage:
        u = self.usage
        if u is not None:  # what the service counted is never replaced by an estimate
            return CompletionUsage(
                u.prompt_tokens,
                u.completion_tokens,
                u.total_tokens,
                prompt_tokens_details=u.prompt_tokens_details,
                completion_tokens_details=u.completion_tokens_details,
            )
        text = "".join("".join(c.text) for c in self.choices.values())
        prompt = sum(estimate_tokens(_text(m.get("content"))) for m in self.history)
        return CompletionUsage(prompt, estimate_tokens(text), estimated=True)

    async def _save(self, failed: bool = False) -> None:
        """Append the turn to the conversation. A failed turn keeps the user's messages,
        and the partial answer (if any) with ``"status": "incomplete"`` (a key llmplex
        keeps for itself: never sent upstream); the provider's state is not updated."""
        if self.record is None:
            return
        message = self.choices[0].message()
        reply: dict[str, Any] = {"role": "assistant", "content": message.content}
        if message.tool_calls and not failed:  # a half-streamed call cannot be answered
            reply["tool_calls"] = [c.model_dump() for c in message.tool_calls]
        if message.refusal:
            reply["refusal"] = message.refusal
        if reply["content"] is None and len(reply) == 2:
            reply["content"] = ""
        turn = [*self.new_messages]
        if failed:
            if reply["content"] or len(reply) > 2:
                turn.append({**reply, "status": "incomplete"})
        else:
            turn.append(reply)
        self.record = await asyncio.to_thread(
            self.client.store.append,
            self.record.id,
            turn,
            provider=self.provider,
            model=self.model,
            state=None if failed else self.state,
            expected_turns=len(self.record.messages),
        )

    def _chunk(self, choices: list[ChunkChoice], **more: Any) -> ChatCompletionChunk:
        meta = self.meta
        if meta is None:
            return ChatCompletionChunk(
                self.id,
                self.created,
                self.model,
                self.provider,
                choices,
                emulated=self.emulated,
                **more,
            )
        return ChatCompletionChunk(
            self.id,
            self.created,
            meta.model or self.model,
            self.provider,
            choices,
            system_fingerprint=meta.system_fingerprint,
            service_tier=meta.service_tier,
            emulated=self.emulated,
            **more,
        )

    async def complete(self) -> ChatCompletion:
        run = self._answer(False)
        try:
            async for _ in run:  # (nothing is yielded: one step runs the whole answer)
                pass
        finally:
            # (what aclosing does) a failure or a cancellation closes the run, and its
            # upstream request, now
            await run.aclose()
        meta = self.meta
        return ChatCompletion(
            self.id,
            self.created,
            self.answer_model,
            self.provider,
            [
                Choice(
                    index,
                    choice.message(),
                    choice.finish_reason or _default_finish(choice),
                    choice.choice_logprobs(),
                )
                for index, choice in sorted(self.choices.items())
            ],
            self.usage_object(),
            conversation_id=self.record.id if self.record else None,
            system_fingerprint=meta.system_fingerprint if meta else None,
            service_tier=meta.service_tier if meta else None,
            emulated=self.emulated,
        )


#: the events that are part of a choice's answer
_ANSWER_EVENTS = (
    ToolCallDelta,
    ReasoningDelta,
    RefusalDelta,
    ChoiceText,
    Logprobs,
    ReasoningSignature,
)
_AnswerEvent = (
    ToolCallDelta | ReasoningDelta | RefusalDelta | ChoiceText | Logprobs | ReasoningSignature
)


def _messages(messages: list[dict[str, Any]] | list[dict[str, str]]) -> Messages:
    """``messages`` as the provider contract types them: each was checked on its way in
    (``prompt.validate_messages``; a store keeps only checked turns, and the emulation's
    rendered ones are role/content pairs), so they are OpenAI-shaped Message dicts."""
    return messages  # type: ignore[return-value]  # (a cast, without the call of one)


def _default_finish(choice: _Choice) -> str:
    return "tool_calls" if choice.calls else "stop"


def _text(content: Any) -> str:
    """The text of a message's content, for token estimates."""
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content or () if isinstance(p, Mapping))


class AsyncStream:
    """The chunks of a streamed answer (``create(stream=True)``).

    ``async for chunk in stream``; ``async with stream:`` or ``await stream.close()``
    stops early and cleans up upstream (the request is cancelled, what the provider made
    is deleted) at once, not at garbage collection.
    """

    __slots__ = ("_chunks",)

    def __init__(self, chunks: AsyncGenerator[ChatCompletionChunk, None]) -> None:
        self._chunks = chunks

    def __aiter__(self) -> AsyncIterator[ChatCompletionChunk]:
        # the chunks themselves: ``async for`` then steps them with no layer of ours between
        return self._chunks

    async def __anext__(self) -> ChatCompletionChunk:
        return await self._chunks.__anext__()

    async def close(self) -> None:
        """Stop the stream (no-op when it ended)."""
        await self._chunks.aclose()

    aclose = close

    async def __aenter__(self) -> AsyncStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


class _SyncChunks(Protocol):
    """What a :class:`Stream` iterates: chunks, and a way to stop early."""

    def __next__(self) -> ChatCompletionChunk: ...

    def close(self) -> None: ...


class Stream:
    """The sync counterpart of :class:`AsyncStream`: iterate it; ``with stream:`` or
    ``stream.close()`` stops early and cleans up upstream."""

    __slots__ = ("_chunks",)

    def __init__(self, chunks: _SyncChunks) -> None:
        self._chunks = chunks

    def __iter__(self) -> Stream:
        return self

    def __next__(self) -> ChatCompletionChunk:
        return next(self._chunks)

    def close(self) -> None:
        """Stop the stream (no-op when it ended)."""
        self._chunks.close()

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _AsyncModels:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def list(self, *, all: bool = False) -> ModelList:
        """The models a request can be routed to now, each with the providers serving it:
        those of working providers that are configured (or need no configuration),
        including the models their upstreams list (discovered for configured
        OpenAI-compatible providers, cached: :mod:`llmplex.providers.discovery`), with
        the upstream's ``created`` (0 when unknown). ``all=True`` lists every model of
        every provider, those not routable with ``available=False`` and a ``reason``."""
        client = self._client
        await client._discover()
        router = client.router
        rows: dict[str, list[Any]] = {}  # id -> [providers, created, reasons, available]
        reasons: dict[str, str | None] = {}
        for cls in router.provider_classes():
            name = cls.get_name()
            reason = reasons[name] = client.unavailable(cls)
            if reason is not None and not all:
                continue
            listed = router.discovered.listed(name) if reason is None else {}
            # What the upstream lists replaces the static row (which may not hold there).
            # every provider lists its models (ProviderModelMixin), though
            # provider_classes() types them as AsyncGeneratorProvider only
            assert issubclass(cls, ProviderModelMixin)
            static = cls.get_models()
            for model in dict.fromkeys([*(listed or static), *getattr(cls, "model_aliases", {})]):
                row = rows.setdefault(model, [[], 0, [], False])
                row[0].append(name)
                found = listed.get(model)
                if found is not None and found.created and not row[1]:
                    row[1] = found.created
                if reason is None:
                    row[3] = True
                else:
                    row[2].append(f"{name}: {reason}")
        for alias, targets in router.aliases.items():
            names = list(dict.fromkeys(str(t).split(":", 1)[0] for t in targets))
            able = [n for n in names if reasons.get(_provider_name(n)) is None]
            if able or all:
                row = rows.setdefault(alias, [[], 0, [], False])
                row[0].extend(n for n in names if n not in row[0])
                row[3] = row[3] or bool(able)
                row[2].extend(
                    f"{n}: {reasons.get(_provider_name(n))}" for n in names if n not in able
                )
        return ModelList(
            [
                Model(
                    model,
                    providers,
                    created,
                    available,
                    None if available else "; ".join(dict.fromkeys(why)) or None,
                )
                for model, (providers, created, why, available) in sorted(rows.items())
            ]
        )


def _provider_name(name: str) -> str:
    """The registered spelling of a provider name (as given when unknown)."""
    from .providers import find_provider

    return find_provider(name) or name


class _AsyncConversations:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def create(
        self,
        *,
        model: str | None = None,
        messages: Sequence[Mapping[str, Any]] = (),
        metadata: dict[str, Any] | None = None,
    ) -> Conversation:
        """Start a conversation (``messages`` may seed it, e.g. with a system message)."""
        seed = validate_messages(list(messages)) if messages else []
        return await asyncio.to_thread(
            self._client.store.create, model=model, messages=seed, metadata=metadata
        )

    async def retrieve(self, conversation_id: str) -> Conversation:
        return await asyncio.to_thread(self._client.store.get, conversation_id)

    get = retrieve

    async def delete(self, conversation_id: str) -> None:
        await asyncio.to_thread(self._client.store.delete, conversation_id)

    async def list(self, limit: int = 50) -> list[Conversation]:
        return await asyncio.to_thread(self._client.store.list, limit)


# -- sync --------------------------------------------------------------------------------


class Client:
    """The synchronous client: the same API, run on llmplex's background loop, so it also
    works inside Jupyter or any running event loop. Takes :class:`AsyncClient`'s arguments.

    It keeps connections alive between calls (one pool on the background loop), closed by
    :meth:`close`, at the end of ``with Client() as client:``, when the client is garbage
    collected, or at interpreter exit.
    """

    def __init__(self, **kwargs: Any) -> None:
        from .http.pool import ConnectionPool

        self._async = AsyncClient(**kwargs)
        self._async._pool = pool = ConnectionPool()
        self.chat = _SyncChat(self._async)
        self.models = _SyncProxy(self._async.models)
        self.conversations = _SyncProxy(self._async.conversations)
        self.embeddings = _SyncProxy(self._async.embeddings)
        # Holds the pool, not the client: the finalizer must not keep the client alive.
        self._finalizer = weakref.finalize(self, _close_pool, pool)

    @property
    def router(self) -> Router:
        return self._async.router

    @property
    def store(self) -> ConversationStore:
        return self._async.store

    def close(self) -> None:
        """Close the kept-alive connections; later calls open their own again."""
        self._async._pool = None
        self._finalizer()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client(providers={sorted(self._async.provider_options)!r})"


def _close_pool(pool: ConnectionPool) -> None:
    if pool.connector_created:  # never used: nothing on the loop to close
        from . import bridge

        bridge.finalize(pool.close())


class _SyncChat:
    def __init__(self, client: AsyncClient) -> None:
        self.completions = _SyncCompletions(client)


class _SyncCompletions:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    @overload
    def create(self, *, stream: Literal[False] = ..., **kwargs: Any) -> ChatCompletion: ...

    @overload
    def create(self, *, stream: Literal[True], **kwargs: Any) -> Stream: ...

    @overload
    def create(self, *, stream: bool, **kwargs: Any) -> ChatCompletion | Stream: ...

    def create(self, *, stream: bool = False, **kwargs: Any) -> ChatCompletion | Stream:
        """See :meth:`_AsyncCompletions.create`; ``stream=True`` gives a :class:`Stream`."""
        from . import bridge

        result = bridge.run(self._client.chat.completions.create(stream=stream, **kwargs))
        if isinstance(result, AsyncStream):
            chunks = result
            return Stream(bridge.iterate(lambda: chunks))
        return result


class _SyncProxy:
    """Runs an async namespace's coroutine methods synchronously."""

    def __init__(self, target: Any) -> None:
        self._target = target

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._target, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            from . import bridge

            return bridge.run(method(*args, **kwargs))

        call.__doc__ = method.__doc__
        call.__name__ = name
        return call
