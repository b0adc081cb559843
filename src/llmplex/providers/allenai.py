"""Ai2 Playground (``AllenAI``): Olmo and Molmo models over olmo-api.

Wire protocol: PROTOCOLS.md §1b (v5, the default) and §1 (the retired v4, as
``api_version="v4"``). A v5 turn is one form ``POST /v5/threads/chat`` (a tool result is
one per result), answered with typed JSON lines (:mod:`.ai2_v5`). A thread continues by
sending the last message id of the previous turn as ``parent``, with the same identity;
the :class:`Conversation` carries both.

Credentials (v5): the service wants a captcha token on every message. Signed in — an
Auth0 access token of playground.allenai.org as ``api_key=`` or ``AI2_API_KEY`` — any
token will do and llmplex sends one; anonymous callers pass ``captcha_token=``, a real
reCAPTCHA token (a string: used once) or an async callable minting one per message.
"""

from __future__ import annotations

import copy
import os
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any, ClassVar
from uuid import uuid4

import aiohttp

from ..capabilities import TEXT_ONLY, Capabilities
from ..errors import InvalidRequestError, LLMplexError, MissingAuthError, StreamError
from ..http.session import DEFAULT_TIMEOUT, Session
from ..prompt import validate_messages
from ..types import Chunk, FinishReason, JsonConversation, Messages
from . import ai2_v5 as v5
from .ai2_models import BUILTIN, V4_MODEL_HOSTS, Ai2Model, Catalogue
from .ai2_v4 import stream_v4
from .base import AsyncGeneratorProvider, ProviderModelMixin

__all__ = ["AllenAI", "Conversation", "API_KEY_ENV", "CaptchaToken"]

_ORIGIN = "https://olmo-api.allen.ai"
#: the environment variable holding the Auth0 access token (signed-in mode)
API_KEY_ENV = "AI2_API_KEY"
#: what a signed-in post sends as ``captchaToken`` when the caller has none: the
#: service wants the field present but does not assess it for signed-in users
SIGNED_IN_CAPTCHA = "signed-in"
_API_VERSIONS = ("v5", "v4")
_V4_DEFAULT = "tulu3-405b"
_PENDING_LIMIT = 1024  # threads remembered by their pending tool calls

#: a captcha token, or an async callable minting one per message
CaptchaToken = str | Callable[[], Awaitable[str]]

_HOW_TO_SIGN_IN = (
    f"sign in at https://playground.allenai.org and pass its Auth0 access token as "
    f"api_key= or set {API_KEY_ENV} (the token is the 'Authorization: Bearer ...' header of "
    "the Playground's requests to olmo-api.allen.ai, in the browser's developer tools; "
    "it expires after a day), or pass captcha_token= (a reCAPTCHA token minted in a "
    "browser on the Playground, or an async callable minting one per message)"
)


class Conversation(JsonConversation):
    """State of one Ai2 thread: ``model``, ``messages`` (the history), ``parent`` (the
    id to continue from), ``thread_id`` (its root message, v5) and
    ``x_anonymous_user_id`` (one per conversation: the server refuses follow-ups from
    another id; unused when signed in)."""

    model: str
    messages: list[dict[str, Any]]
    parent: str | None
    thread_id: str | None
    x_anonymous_user_id: str

    def __init__(
        self,
        model: str = "",
        messages: Iterable[Mapping[str, Any]] | None = None,
        parent: str | None = None,
        x_anonymous_user_id: str | None = None,
        thread_id: str | None = None,
    ) -> None:
        super().__init__(
            model=model,
            messages=[dict(m) for m in messages or ()],
            parent=parent,
            thread_id=thread_id,
            x_anonymous_user_id=x_anonymous_user_id or str(uuid4()),
        )

    def __repr__(self) -> str:
        # The anonymous id is what lets anyone post into this thread: keep it out of logs.
        return (
            f"Conversation(model={self.model!r}, parent={self.parent!r}, "
            f"x_anonymous_user_id='***', messages=<{len(self.messages or ())}>)"
        )


class _Working:
    """``AllenAI.working``: whether the provider is usable as configured by the
    environment (see :meth:`AllenAI.why_not_working`)."""

    def __get__(self, instance: object, owner: type[AllenAI]) -> bool:
        return owner.why_not_working() is None


class AllenAI(AsyncGeneratorProvider, ProviderModelMixin):
    """Ai2 Playground: signed in (``api_key=``/``AI2_API_KEY``) or with a captcha token
    (``captcha_token=``); ``api_version="v4"`` for deployments of the old protocol."""

    label = "Ai2 Playground"
    url = "https://playground.allenai.org"
    login_url = "https://playground.allenai.org"
    api_endpoint = _ORIGIN + v5.PATH
    working = _Working()
    needs_auth = True
    supports_stream = True
    #: what some model can do; :meth:`capabilities_for` says per model
    capabilities = TEXT_ONLY.with_(tools="native", images=True, files=True, reasoning=True)

    default_model = "olmo-3.1-32b-instruct"
    models: ClassVar[list[str]] = list(BUILTIN)
    model_aliases: ClassVar[dict[str, str]] = {
        "olmo-3.1-32b": "olmo-3.1-32b-instruct",
        "olmo-3.1-think": "olmo-3.1-32b-think",
    }
    conversation_class = Conversation
    #: models fetched from ``GET /v5/models/``, per origin
    catalogue: ClassVar[Catalogue] = Catalogue()
    #: the v4 protocol's model hosts (a model sent with the wrong host is a 400)
    model_hosts: ClassVar[dict[str, str]] = V4_MODEL_HOSTS
    #: tool call id -> the thread waiting for its result (for callers without state)
    _pending: ClassVar[OrderedDict[str, dict[str, Any]]] = OrderedDict()

    # -- models ----------------------------------------------------------------------------

    @classmethod
    def get_models(cls) -> list[str]:
        ids = cls.catalogue.ids()
        return [cls.default_model, *(i for i in ids if i != cls.default_model)]

    @classmethod
    def accepts_model(cls, model: str) -> bool:
        """Models of a fetched list, and the v4 protocol's models."""
        return model in V4_MODEL_HOSTS or cls.catalogue.get(model) is not None

    @classmethod
    def get_host(cls, model: str) -> str:
        """The v4 inference host serving ``model``: ``"modal"`` unless listed."""
        return cls.model_hosts.get(model, "modal")

    @classmethod
    def capabilities_for(cls, model: str | None) -> Capabilities:
        """What ``model`` can do: from its flags in ``GET /v5/models/`` (or the built-in
        list); the v4 models are text only; no model: what some model can do."""
        if not model:
            return cls.capabilities  # some model can
        if model in V4_MODEL_HOSTS:
            return TEXT_ONLY
        info = cls.catalogue.get(cls.model_aliases.get(model, model))
        return info.capabilities if info is not None else cls.capabilities

    @classmethod
    async def load_models(
        cls,
        *,
        base_url: str | None = None,
        proxy: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        api_key: str | None = None,
    ) -> list[Ai2Model]:
        """``GET /v5/models/`` now (anonymous access is allowed), kept in
        :attr:`catalogue`. (Not ``fetch_models``: that name is the OpenAI-compatible
        providers' model discovery.)"""
        origin = cls.resolve_base_url(base_url, _ORIGIN)
        headers = cls._auth_headers(api_key or os.environ.get(API_KEY_ENV), None)
        async with Session(
            cls.get_name(), proxy=proxy, headers=headers, timeout=timeout
        ) as session:
            return list(await cls._fetch(session, origin))

    @classmethod
    async def _fetch(cls, session: Session, origin: str) -> Iterable[Ai2Model]:
        data = await session.json("GET", origin + v5.MODELS_PATH)
        return cls.catalogue.store(origin, data).values()

    # -- status ----------------------------------------------------------------------------

    @classmethod
    def why_not_working(cls, options: Mapping[str, Any] | None = None) -> str | None:
        """``None`` when calls can succeed as configured (``options``: the provider's
        configured options, over the environment), else why not."""
        options = options or {}
        if (options.get("api_version") or "v5") == "v4":
            if options.get("base_url") or cls.env_base_url():
                return None
            return (
                "the v4 API was removed from olmo-api.allen.ai on 2025-11-03: set "
                "base_url to a deployment that still runs it"
            )
        if options.get("api_key") or os.environ.get(API_KEY_ENV) or options.get("captcha_token"):
            return None
        return (
            f"no credentials (set {API_KEY_ENV} to a Playground sign-in token, or "
            "configure captcha_token)"
        )

    # -- a turn ----------------------------------------------------------------------------

    @classmethod
    async def create_async_generator(
        cls,
        model: str,
        messages: Messages | str,
        *,
        proxy: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        base_url: str | None = None,
        api_version: str | None = None,
        api_key: str | None = None,
        captcha_token: CaptchaToken | None = None,
        host: str | None = None,
        private: bool = True,
        temperature: float | None = None,
        top_p: float | None = None,
        max_tokens: int | None = None,
        stop: str | Iterable[str] | None = None,
        tools: list[Mapping[str, Any]] | None = None,
        tool_choice: Any = None,
        extra_parameters: Mapping[str, Any] | None = None,
        conversation: Conversation | None = None,
        return_conversation: bool = False,
        **kwargs: Any,  # refused: see reject_unknown
    ) -> AsyncIterator[Chunk]:
        """Stream a reply: text deltas, reasoning (``ReasoningDelta``) and tool calls
        (``ToolCallDelta``), then the updated :class:`Conversation` (with
        ``return_conversation=True``), then ``FinishReason``. Pass ``conversation=`` to
        continue a thread: only the messages after the last assistant message are sent
        then (a new user message, or tool results).

        ``api_version``: ``"v5"`` (default) or ``"v4"``. ``api_key``: an Auth0 access
        token (else ``AI2_API_KEY``). ``captcha_token``: a string or an async callable
        returning one, called once per message. ``extra_parameters``: a JSON object
        passed to the model. ``host`` is the v4 inference host (deprecated in v5)."""
        cls.reject_unknown(kwargs)
        name = cls.get_name()
        version = api_version or "v5"
        if version not in _API_VERSIONS:
            raise InvalidRequestError(
                f"api_version must be 'v5' or 'v4', not {version!r}",
                param="api_version",
                provider=name,
            )
        api_key = api_key or os.environ.get(API_KEY_ENV) or None
        origin = cls.resolve_base_url(base_url, _ORIGIN)
        if stop is not None and not isinstance(stop, str):
            stop = list(stop)
        if version == "v4":
            for option, value in (
                ("captcha_token", captcha_token),
                ("tools", tools),
                ("tool_choice", tool_choice),
                ("extra_parameters", extra_parameters),
            ):
                if value is not None:
                    raise InvalidRequestError(
                        f"{option} needs api_version='v5' (the v4 protocol has no such field)",
                        param=option,
                        provider=name,
                    )
            model = cls.get_model(
                model or (conversation.model if conversation else None) or _V4_DEFAULT
            )
            if conversation is None:
                conversation = Conversation(model)
            headers = {
                "Accept": "*/*",
                "Origin": cls.url,
                "Referer": f"{cls.url}/",
                "X-Anonymous-User-ID": conversation.x_anonymous_user_id,
            }
            if api_key:
                headers["Authorization"] = f"Bearer {api_key}"
            async for chunk in stream_v4(
                origin,
                model,
                host or cls.get_host(model),
                messages,
                conversation=conversation,
                headers=headers,
                proxy=proxy,
                timeout=timeout,
                private=private,
                stop=stop,
                options={"temperature": temperature, "top_p": top_p, "max_tokens": max_tokens},
                return_conversation=return_conversation,
            ):
                yield chunk
            return

        model = cls.get_model(model or (conversation.model if conversation else None))
        checked = [dict(m) for m in validate_messages(messages)]
        if api_key is None and captcha_token is None:
            raise MissingAuthError(
                f"Ai2 asks every message for a captcha token: {_HOW_TO_SIGN_IN}", provider=name
            )
        if conversation is None or not conversation.parent:
            conversation = cls._waiting_thread(checked, origin) or conversation
        continuing = conversation is not None and bool(conversation.parent)
        if conversation is None:
            conversation = Conversation(model)
        posts, first_new = v5.plan(checked, continuing)
        options: dict[str, Any] = {
            "private": private,
            "temperature": temperature,
            "topP": top_p,
            "maxTokens": max_tokens,
            "stop": [stop] if isinstance(stop, str) else stop,
            "host": host,
        }
        if extra_parameters is not None:
            options["extraParameters"] = dict(extra_parameters)
        headers = cls._auth_headers(api_key, conversation.x_anonymous_user_id)
        reader = v5.ChunkReader()
        async with Session(name, proxy=proxy, headers=headers, timeout=timeout) as session:
            info = await cls._model_info(session, origin, model)
            if tools and tool_choice != "none":
                if info is not None and not info.can_call_tools:
                    raise InvalidRequestError(
                        f"{model} cannot call tools (Ai2's canCallTools is false)",
                        param="tools",
                        provider=name,
                    )
                if tool_choice not in (None, "auto"):
                    raise InvalidRequestError(
                        "Ai2 decides itself whether to call a tool: tool_choice may be "
                        "'auto' or 'none' only",
                        param="tool_choice",
                        provider=name,
                    )
                options["toolDefinitions"] = v5.tool_definitions(tools)
                options["enableToolCalling"] = True
            if any(p.files for p in posts) and info is not None and not info.accepts_files:
                raise InvalidRequestError(
                    f"{model} takes no images or files (Ai2's acceptsFiles is false)",
                    param="messages",
                    provider=name,
                )
            parent = conversation.parent if continuing else None
            for post in posts:
                reader = v5.ChunkReader()
                captcha = await _captcha(captcha_token, api_key is not None, name)
                form = _form(
                    v5.form_fields(
                        post, model=model, parent=parent, captcha=captcha, options=options
                    ),
                    post.files,
                )
                async with session.request(
                    "POST", origin + v5.PATH, data=form, check=False
                ) as response:
                    if response.status >= 400:
                        raise v5.problem_error(
                            response.status,
                            await _body(response),
                            response.headers.get("Retry-After"),
                        )
                    try:
                        async for line in session.ndjson(response):
                            for chunk in reader.feed(line):
                                yield chunk
                            if reader.ended:
                                break
                    except LLMplexError:
                        if not reader.errors and reader.final is None:
                            raise  # else the stream broke after its answer or an error
                for chunk in reader.flush():
                    yield chunk
                if reader.errors:
                    code, description = reader.errors[0]
                    raise StreamError(f"{description} (code: {code})", provider=name)
                reader.check()
                parent = reader.last_id() or parent
                if getattr(conversation, "thread_id", None) is None and reader.final:
                    conversation.thread_id = reader.final[0].get("root")
        # The turn is complete: it becomes history.
        calls = reader.tool_calls()
        conversation.messages.extend(checked[first_new:] if continuing else checked)
        reply: dict[str, Any] = {"role": "assistant", "content": reader.final_text() or None}
        if calls:
            reply["tool_calls"] = calls
        elif reply["content"] is None:
            reply["content"] = ""
        conversation.messages.append(reply)
        conversation.parent = parent
        conversation.model = model
        if calls:
            cls._remember(calls, conversation, origin)
        if return_conversation:
            yield conversation
        yield FinishReason(reader.finish_reason())

    # -- helpers ---------------------------------------------------------------------------

    @classmethod
    def _auth_headers(cls, api_key: str | None, anonymous_id: str | None) -> dict[str, str]:
        headers = {"Accept": "*/*", "Origin": cls.url, "Referer": f"{cls.url}/"}
        if api_key:
            # Signed in: no anonymous id, so that a bad token is a 401 rather than a
            # silent fall back to anonymous access.
            headers["Authorization"] = f"Bearer {api_key}"
        elif anonymous_id:
            headers["X-Anonymous-User-ID"] = anonymous_id
        return headers

    @classmethod
    async def _model_info(cls, session: Session, origin: str, model: str) -> Ai2Model | None:
        """What ``origin`` says of ``model``, its model list fetched once per
        :data:`~.ai2_models.CACHE_SECONDS`; the built-in list when it cannot be read."""
        if cls.catalogue.fresh(origin) is None:
            try:
                await cls._fetch(session, origin)
            except LLMplexError:
                cls.catalogue.store(
                    origin,
                    [
                        {
                            "id": m.id,
                            "canCallTools": m.can_call_tools,
                            "canThink": m.can_think,
                            "acceptsFiles": m.accepts_files,
                        }
                        for m in BUILTIN.values()
                    ],
                )
        return cls.catalogue.get(model, origin)

    @classmethod
    def _remember(
        cls, calls: list[dict[str, Any]], conversation: Conversation, origin: str
    ) -> None:
        """Keep the thread waiting for these calls' results, for a caller that sends
        them back without the conversation (a stateless chat completion)."""
        state = copy.deepcopy({"origin": origin, **conversation.get_dict()})
        for call in calls:
            cls._pending[call["id"]] = state
            cls._pending.move_to_end(call["id"])
        while len(cls._pending) > _PENDING_LIMIT:
            cls._pending.popitem(last=False)

    @classmethod
    def _waiting_thread(cls, messages: list[dict[str, Any]], origin: str) -> Conversation | None:
        """The thread these messages' trailing tool results answer, if this process
        started it (else the history goes as a transcript into a new thread)."""
        if not messages or messages[-1]["role"] != "tool":
            return None
        state = cls._pending.get(messages[-1]["tool_call_id"])
        if state is None or state["origin"] != origin:
            return None
        return Conversation(**{k: v for k, v in state.items() if k != "origin"})


async def _captcha(token: CaptchaToken | None, signed_in: bool, provider: str) -> str | None:
    """The ``captchaToken`` of one post: the caller's (minted now, if a callable), else a
    placeholder for signed-in posts."""
    if token is None:
        return SIGNED_IN_CAPTCHA if signed_in else None
    if isinstance(token, str):
        return token
    minted = await token()
    if not isinstance(minted, str) or not minted:
        raise MissingAuthError("the captcha_token callable returned no token", provider=provider)
    return minted


async def _body(response: aiohttp.ClientResponse, limit: int = 8000) -> str:
    """The start of an error answer's body (a problem document)."""
    parts: list[bytes] = []
    size = 0
    while size < limit:
        part = await response.content.read(limit - size)
        if not part:
            break
        parts.append(part)
        size += len(part)
    return b"".join(parts).decode("utf-8", "replace")


def _form(fields: list[tuple[str, str]], files: list[tuple[str, str, bytes]]) -> aiohttp.FormData:
    form = aiohttp.FormData(charset="utf-8")
    for key, value in fields:
        # An explicit text part type keeps FormData multipart (as the Playground sends)
        # and UTF-8 keeps Cyrillic/CJK/emoji intact.
        form.add_field(key, value, content_type="text/plain; charset=utf-8")
    for filename, ctype, data in files:
        form.add_field("files", data, filename=filename, content_type=ctype)
    return form


# -- provider spec: what the registry, config, the server and --emulate know of AllenAI --
from .spec import ProviderSpec  # noqa: E402  (kept with the spec, a block of its own)

#: AllenAI's facts for the registry (:mod:`llmplex.providers.spec`)
SPEC = ProviderSpec(
    name="AllenAI",
    provider=f"{__name__}:AllenAI",
    label=AllenAI.label,
    base_url=_ORIGIN,
    key_env=(API_KEY_ENV,),
    capabilities=AllenAI.capabilities,
    models=tuple(AllenAI.models),
    aliases=AllenAI.model_aliases,
    emulator="llmplex.emulators.ai2:Ai2Emulator",
    emulator_options={"api_key": "ai2-emulated-token"},
)  # llmplex.emulators.ai2.EMULATED_TOKEN
