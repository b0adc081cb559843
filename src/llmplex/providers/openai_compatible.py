"""Any OpenAI-style ``/chat/completions`` endpoint (``OpenAICompatible``) and named ones.

Wire protocol: PROTOCOLS.md §5. One JSON POST to ``{base_url}/chat/completions`` with
``stream: true``, answered by SSE ``data: {chat.completion.chunk}`` events ending with
``data: [DONE]``. Here ``base_url`` is the API base *including its path*
(``http://localhost:11434/v1``), because compatible servers mount the API under different
paths. The named services (:data:`ENDPOINTS`) are data; :func:`endpoint_provider` turns an
entry into a provider class named after it (``Groq``, ``Ollama``...).
"""

from __future__ import annotations

import functools
import os
from collections.abc import AsyncIterator, Mapping
from typing import Any, ClassVar

from ..errors import (
    InvalidRequestError,
    MissingAuthError,
    ProviderConnectionError,
    ResponseError,
    StreamError,
)
from ..http.session import DEFAULT_TIMEOUT, MAX_BODY_BYTES, Session
from ..http.sse import loads
from ..prompt import validate_messages
from ..surrogates import Surrogates
from ..types import (
    ChoiceText,
    Chunk,
    FinishReason,
    Logprobs,
    Messages,
    ReasoningDelta,
    RefusalDelta,
    ResponseMeta,
    ToolCallDelta,
    Usage,
)
from .base import AsyncGeneratorProvider, ProviderModelMixin
from .discovery import DiscoveredModel, parse_model_list
from .endpoints import ENDPOINTS, FULL, Endpoint

__all__ = ["OpenAICompatible", "Endpoint", "ENDPOINTS", "endpoint_provider"]


class OpenAICompatible(AsyncGeneratorProvider, ProviderModelMixin):
    """A generic OpenAI Chat Completions client: pass ``base_url`` (with its path, e.g.
    ``http://localhost:11434/v1``) or set ``LLMPLEX_OPENAICOMPATIBLE_BASE_URL``."""

    label = "OpenAI-compatible API"
    url = "https://platform.openai.com/docs/api-reference/chat"
    working = True
    needs_auth = False
    #: a server of unknown make: everything is forwarded, the server decides
    capabilities = FULL
    default_model = ""
    #: the API base of the service, path included; "" means base_url= is required
    default_base_url: ClassVar[str] = ""
    #: environment variable read when no ``api_key`` is passed (None: none is read)
    api_key_env: ClassVar[str | None] = None
    local: ClassVar[bool] = False
    #: whether the service has OpenAI's ``POST /embeddings`` (a server of unknown make: it
    #: is asked, and says); the embedding models it lists
    embeddings: ClassVar[bool] = True
    embedding_models: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def accepts_model(cls, model: str) -> bool:
        return bool(model)  # these services serve open-ended catalogues

    @classmethod
    def _base(cls, base_url: str | None) -> str:
        base = cls.resolve_base_url(base_url, cls.default_base_url)
        if not base:
            raise InvalidRequestError(
                f"base_url is required (e.g. http://localhost:11434/v1), or set "
                f"LLMPLEX_{cls.get_name().upper()}_BASE_URL",
                provider=cls.get_name(),
            )
        return base

    @classmethod
    def _headers(cls, api_key: str | None, headers: Mapping[str, str] | None) -> dict[str, str]:
        """A fresh header dict per call (never shared between calls or callers)."""
        result = dict(headers or {})
        key = api_key or (os.environ.get(cls.api_key_env) if cls.api_key_env else None)
        if key:
            result["Authorization"] = f"Bearer {key}"
        elif cls.needs_auth and not any(h.lower() == "authorization" for h in result):
            raise MissingAuthError(
                f"no API key: pass api_key= or set the environment variable {cls.api_key_env}",
                provider=cls.get_name(),
            )
        return result

    @classmethod
    async def create_async_generator(
        cls,
        model: str,
        messages: Messages | str,
        *,
        proxy: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        base_url: str | None = None,
        api_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        extra_body: Mapping[str, Any] | None = None,
        # OpenAI's fields, forwarded as given (the server checks them):
        temperature: float | None = None,
        top_p: float | None = None,
        max_tokens: int | None = None,
        max_completion_tokens: int | None = None,
        stop: str | list[str] | None = None,
        seed: int | None = None,
        presence_penalty: float | None = None,
        frequency_penalty: float | None = None,
        n: int | None = None,
        logprobs: bool | None = None,
        top_logprobs: int | None = None,
        logit_bias: Mapping[str, float] | None = None,
        tools: list[Mapping[str, Any]] | None = None,
        tool_choice: Any = None,
        parallel_tool_calls: bool | None = None,
        functions: list[Any] | None = None,
        function_call: Any = None,
        response_format: Mapping[str, Any] | None = None,
        reasoning_effort: str | None = None,
        service_tier: str | None = None,
        user: str | None = None,
        safety_identifier: str | None = None,
        prompt_cache_key: str | None = None,
        metadata: Mapping[str, str] | None = None,
        store: bool | None = None,
        modalities: list[str] | None = None,
        audio: Mapping[str, Any] | None = None,
        prediction: Mapping[str, Any] | None = None,
        verbosity: str | None = None,
        web_search_options: Mapping[str, Any] | None = None,
        stream_options: Mapping[str, Any] | None = None,
        whole: bool = False,
        **kwargs: Any,
    ) -> AsyncIterator[Chunk]:
        """Stream a reply: text deltas and typed events (reasoning, refusal, tool-call
        fragments, logprobs, other choices' text, the upstream's model id), then ``Usage``
        (when the server reports it), then a ``FinishReason`` per choice.

        Every OpenAI field is forwarded as given (``max_completion_tokens`` stays itself).
        ``extra_body`` is merged into the request (a ``None`` value removes a key, e.g.
        ``{"stream_options": None}`` for servers that reject it).

        ``whole`` (llmplex's plumbing, set by the client when nothing needs the answer
        streamed): ask for it with ``stream: false``, one ``chat.completion``, and yield
        the same chunks from it."""
        cls.reject_unknown(kwargs)
        name = cls.get_name()
        model = cls.get_model(model)
        if not model:
            raise InvalidRequestError("a model name is required", provider=name, param="model")
        if stop is not None and not (
            isinstance(stop, str)
            or (isinstance(stop, (list, tuple)) and all(isinstance(s, str) for s in stop))
        ):
            raise InvalidRequestError(
                "stop must be a string or a list of strings", provider=name, param="stop"
            )
        body: dict[str, Any] = {
            "model": model,
            "messages": [_wire_message(m) for m in validate_messages(messages)],
            "stream": True,
            "stream_options": {"include_usage": True, **(stream_options or {})},
        }
        if whole:  # (a non-streamed answer always has its usage)
            body["stream"] = False
            del body["stream_options"]
        # the values in _FORWARDED's order (not locals(): a dict of every local, per call)
        for field, value in zip(
            _FORWARDED,
            (
                temperature,
                top_p,
                max_tokens,
                max_completion_tokens,
                stop,
                seed,
                presence_penalty,
                frequency_penalty,
                n,
                logprobs,
                top_logprobs,
                logit_bias,
                tools,
                tool_choice,
                parallel_tool_calls,
                functions,
                function_call,
                response_format,
                reasoning_effort,
                service_tier,
                user,
                safety_identifier,
                prompt_cache_key,
                metadata,
                store,
                modalities,
                audio,
                prediction,
                verbosity,
                web_search_options,
            ),
            strict=True,
        ):
            if value is not None:
                body[field] = list(value) if isinstance(value, tuple) else value
        for key, value in (extra_body or {}).items():
            if value is None:
                body.pop(key, None)
            else:
                body[key] = value
        url = cls._base(base_url) + "/chat/completions"
        request_headers = cls._headers(api_key, headers)
        request_headers.setdefault("Accept", "text/event-stream, application/json")
        # The Session scrubs every secret these headers carry from the errors it lets out.
        reader = _Reader(name)
        done = False
        async with Session(
            name, proxy=proxy, headers=request_headers, timeout=timeout, stateless=True
        ) as s:
            async with s.request("POST", url, json=body) as response:
                if response.content_type == "application/json":
                    # A server that ignores "stream" answers with one chat.completion.
                    events = reader.completion(await s.read_json(response))
                    for event in events:
                        yield event
                else:
                    try:
                        async for event in s.sse(response):
                            if event.data.strip() == "[DONE]":
                                done = True
                                break
                            try:
                                data = loads(event.data)  # (event.json(), one call less)
                            except ValueError:
                                raise ResponseError(
                                    f"malformed stream event: {event.data[:200]!r}", provider=name
                                ) from None
                            if event.event == "error":  # a named SSE error event
                                data = {"error": data or "error event"}
                            for item in reader.chunk(data):
                                yield item
                    except ProviderConnectionError:
                        if not reader.finish:
                            raise  # else the answer was complete: a lost [DONE] is harmless
        if not done and not reader.finish:
            raise ResponseError(
                "stream ended early (no finish_reason and no [DONE])", provider=name
            )
        for item in reader.tail():
            yield item
        if reader.usage is not None:
            yield reader.usage
        for choice in sorted(reader.finish) or (0,):
            yield FinishReason(reader.finish.get(choice) or "stop", choice)

    @classmethod
    async def create_embeddings(
        cls,
        model: str,
        input: Any,
        *,
        dimensions: int | None = None,
        encoding_format: str | None = None,
        user: str | None = None,
        extra_body: Mapping[str, Any] | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        proxy: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """``POST {base_url}/embeddings``: the service's answer (OpenAI's
        ``CreateEmbeddingResponse``) as it sent it. The fields go as given; ``extra_body``
        is merged into the body (a ``None`` value removes a key).

        Options of this provider's chat calls that embeddings have no use for
        (``temperature``...) are an error, as is a provider without embeddings."""
        name = cls.get_name()
        if not cls.embeddings:
            raise InvalidRequestError("no embeddings API", provider=name, param="model")
        if kwargs:
            unknown = ", ".join(sorted(kwargs))
            raise InvalidRequestError(
                f"embeddings take no option {unknown}",
                provider=name,
                param=next(iter(sorted(kwargs))),
            )
        if not model:
            raise InvalidRequestError("a model name is required", provider=name, param="model")
        body: dict[str, Any] = {"model": model, "input": input}
        for key, value in (
            ("dimensions", dimensions),
            ("encoding_format", encoding_format),
            ("user", user),
        ):
            if value is not None:
                body[key] = value
        for key, value in (extra_body or {}).items():
            if value is None:
                body.pop(key, None)
            else:
                body[key] = value
        request_headers = cls._headers(api_key, headers)
        async with Session(name, proxy=proxy, headers=request_headers, timeout=timeout) as session:
            data = await session.json("POST", cls._base(base_url) + "/embeddings", json=body)
        if not isinstance(data, dict) or not isinstance(data.get("data"), list):
            raise ResponseError("invalid embeddings answer (no 'data' array)", provider=name)
        return data

    @classmethod
    async def list_models(
        cls,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        proxy: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        headers: Mapping[str, str] | None = None,
    ) -> list[str]:
        """The model ids the server lists at ``GET {base_url}/models``."""
        models = await cls.fetch_models(
            base_url=base_url, api_key=api_key, proxy=proxy, timeout=timeout, headers=headers
        )
        return [m.id for m in models]

    @classmethod
    async def fetch_models(
        cls,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        proxy: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        headers: Mapping[str, str] | None = None,
        limit: int = MAX_BODY_BYTES,
    ) -> list[DiscoveredModel]:
        """The models the server lists at ``GET {base_url}/models``, with ``created`` and
        ``owned_by`` where it gives them; a body over ``limit`` bytes is not read (an
        error), and at most :data:`~llmplex.providers.discovery.MAX_DISCOVERED_MODELS`
        are kept."""
        request_headers = cls._headers(api_key, headers)
        async with Session(
            cls.get_name(), proxy=proxy, headers=request_headers, timeout=timeout
        ) as session:
            data = await session.json("GET", cls._base(base_url) + "/models", limit=limit)
        models = parse_model_list(data)
        if models is None:
            raise ResponseError("invalid model list (no 'data' array)", provider=cls.get_name())
        return models


#: OpenAI fields forwarded from create_async_generator's keyword arguments
_FORWARDED = (
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "n",
    "logprobs",
    "top_logprobs",
    "logit_bias",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "functions",
    "function_call",
    "response_format",
    "reasoning_effort",
    "service_tier",
    "user",
    "safety_identifier",
    "prompt_cache_key",
    "metadata",
    "store",
    "modalities",
    "audio",
    "prediction",
    "verbosity",
    "web_search_options",
)
#: message keys OpenAI's API defines (others are llmplex's bookkeeping, not sent)
_MESSAGE_KEYS = (
    "role",
    "content",
    "name",
    "tool_calls",
    "tool_call_id",
    "refusal",
    "audio",
    "function_call",
)


def _wire_message(message: Mapping[str, Any]) -> dict[str, Any]:
    if len(message) == 2 and "content" in message:  # the common {"role", "content"}
        return {"role": message["role"], "content": message["content"]}
    return {k: message[k] for k in _MESSAGE_KEYS if k in message}


def _usage(data: dict[str, Any]) -> Usage | None:
    """A Usage from an OpenAI ``usage`` object (Groq puts it under ``x_groq``)."""
    groq = data.get("x_groq")
    raw = data.get("usage") or (groq.get("usage") if isinstance(groq, dict) else None)
    if not isinstance(raw, dict):
        return None
    try:
        prompt = int(raw.get("prompt_tokens") or 0)
        completion = int(raw.get("completion_tokens") or 0)
        total = int(raw.get("total_tokens") or prompt + completion)
    except (TypeError, ValueError):
        return None  # a server's odd usage object must not break a good answer
    details = raw.get("prompt_tokens_details")
    more = raw.get("completion_tokens_details")
    return Usage(
        prompt,
        completion,
        total,
        prompt_tokens_details=details if isinstance(details, dict) else None,
        completion_tokens_details=more if isinstance(more, dict) else None,
    )


class _Reader:
    """Turns chat.completion(.chunk) objects into llmplex chunks, remembering the finish
    reasons (per choice), the usage and whether the upstream's model id was passed on."""

    __slots__ = ("provider", "finish", "usage", "meta_sent", "text", "pieces")

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self.finish: dict[int, str] = {}
        self.usage: Usage | None = None
        self.meta_sent = False
        # Emoji may come as two \ud8xx escapes in two events: the first choice's text has
        # its own joiner (the hot path), every other field one made when first seen.
        self.text = Surrogates()
        self.pieces: dict[tuple[Any, ...], Surrogates] = {}

    def _check(self, data: Any, what: str) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise ResponseError(
                f"unexpected {what} data: {str(data)[:200]!r}", provider=self.provider
            )
        if data.get("error"):
            error = data["error"]
            raise StreamError(
                str(error.get("message") or error) if isinstance(error, dict) else str(error),
                provider=self.provider,
            )
        return data

    def _meta(self, data: dict[str, Any]) -> ResponseMeta | None:
        self.meta_sent = True
        model = data.get("model")
        fingerprint = data.get("system_fingerprint")
        tier = data.get("service_tier")
        if model or fingerprint or tier:
            return ResponseMeta(
                model if isinstance(model, str) else None,
                fingerprint if isinstance(fingerprint, str) else None,
                tier if isinstance(tier, str) else None,
            )
        return None

    def chunk(self, data: Any) -> list[Chunk]:
        """The chunks of one streamed ``chat.completion.chunk``."""
        if type(data) is not dict or data.get("error"):
            data = self._check(data, "delta")
        out: list[Chunk] = []
        if not self.meta_sent:
            meta = self._meta(data)
            if meta is not None:
                out.append(meta)
        for choice in data.get("choices") or ():  # a plain loop: this runs once per chunk
            if not isinstance(choice, dict):
                continue
            index = choice.get("index") or 0
            delta = choice.get("delta")
            if isinstance(delta, dict):
                content = delta.get("content")
                if len(delta) > 1 or content is None or choice.get("logprobs") or index:
                    self.parts(out, delta, choice.get("logprobs"), index)
                elif content and isinstance(content, str):  # the fast path: text only
                    content = self.text.feed(content)
                    if content:
                        out.append(content)
            reason = choice.get("finish_reason")
            if reason:
                self.finish[index] = reason
        if data.get("usage") or "x_groq" in data:  # OpenAI sends "usage": null meanwhile
            self.usage = _usage(data) or self.usage
        return out

    def _fix(self, key: tuple[Any, ...], piece: str) -> str:
        joiner = self.pieces.get(key)
        if joiner is None:
            joiner = self.pieces[key] = Surrogates()
        return joiner.feed(piece)

    def parts(self, out: list[Chunk], delta: dict[str, Any], logprobs: Any, index: int) -> None:
        """Append the chunks of one delta (or whole message) of choice ``index``."""
        if isinstance(logprobs, dict) and (logprobs.get("content") or logprobs.get("refusal")):
            out.append(Logprobs(logprobs.get("content"), logprobs.get("refusal"), index))
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if reasoning and isinstance(reasoning, str):
            reasoning = self._fix(("reasoning", index), reasoning)
            if reasoning:
                out.append(ReasoningDelta(reasoning, index))
        content = delta.get("content")
        if content and isinstance(content, str):
            content = self.text.feed(content) if index == 0 else self._fix(("text", index), content)
            if content:
                out.append(content if index == 0 else ChoiceText(content, index))
        refusal = delta.get("refusal")
        if refusal and isinstance(refusal, str):
            refusal = self._fix(("refusal", index), refusal)
            if refusal:
                out.append(RefusalDelta(refusal, index))
        calls = delta.get("tool_calls") or ()
        legacy = delta.get("function_call")  # the deprecated functions API: one call, index 0
        if isinstance(legacy, dict):
            calls = [{"index": 0, "function": legacy}]
        for call in calls:
            if not isinstance(call, dict):
                continue
            function = call.get("function")
            if not isinstance(function, dict):
                function = {}
            arguments = function.get("arguments")
            position = call.get("index") or 0
            arguments = (
                self._fix(("arguments", index, position), arguments)
                if isinstance(arguments, str)
                else ""
            )
            out.append(
                ToolCallDelta(position, call.get("id"), function.get("name"), arguments, index)
            )

    def tail(self) -> list[Chunk]:
        """At the end of the answer: a surrogate half still held, as U+FFFD."""
        out: list[Chunk] = []
        if self.text.flush():
            out.append("\ufffd")
        for key, joiner in self.pieces.items():
            if joiner.flush():
                kind, index = key[0], key[1]
                if kind == "reasoning":
                    out.append(ReasoningDelta("\ufffd", index))
                elif kind == "text":
                    out.append(ChoiceText("\ufffd", index))
                elif kind == "refusal":
                    out.append(RefusalDelta("\ufffd", index))
                else:
                    out.append(ToolCallDelta(key[2], arguments="\ufffd", choice=index))
        return out

    def completion(self, data: Any) -> list[Chunk]:
        """The chunks of a whole ``chat.completion`` (finish reasons and usage are kept,
        and yielded by the caller at the end)."""
        data = self._check(data, "message")
        out: list[Chunk] = []
        meta = self._meta(data)
        if meta is not None:
            out.append(meta)
        for choice in data.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            index = choice.get("index") or 0
            message = choice.get("message")
            if isinstance(message, dict):
                calls = message.get("tool_calls")
                if isinstance(calls, list):  # whole calls carry no "index": number them
                    message = {
                        **message,
                        "tool_calls": [
                            {**c, "index": i} for i, c in enumerate(calls) if isinstance(c, dict)
                        ],
                    }
                self.parts(out, message, choice.get("logprobs"), index)
            reason = choice.get("finish_reason")
            if reason:
                self.finish[index] = reason
        if not self.finish:
            raise ResponseError("invalid chat.completion: no finish_reason", provider=self.provider)
        self.usage = _usage(data)
        return out


@functools.cache
def _build(name: str) -> type[OpenAICompatible]:
    e = ENDPOINTS[name]
    attrs = dict(
        label=e.label,
        url=e.url,
        default_model=e.default_model,
        models=list(e.models),
        needs_auth=e.needs_auth,
        working=True,
        capabilities=e.capabilities,
        default_base_url=e.base_url,
        api_key_env=e.api_key_env,
        local=e.local,
        api_endpoint=e.base_url + "/chat/completions",
        embeddings=e.embeddings,
        embedding_models=e.embedding_models,
        __module__=__name__,
        __doc__=f"{e.label}: OpenAI-compatible API at {e.base_url}.",
    )
    return type(e.name, (OpenAICompatible,), attrs)


def endpoint_provider(name: str) -> type[OpenAICompatible]:
    """The provider class for a named endpoint (``"Groq"``, ``"ollama"``...), one per name."""
    for key in ENDPOINTS:
        if key.lower() == str(name).lower():
            return _build(key)
    raise InvalidRequestError(f"unknown endpoint {name!r}; known: {', '.join(ENDPOINTS)}")


def __getattr__(name: str) -> type[OpenAICompatible]:
    # ``from llmplex.providers.openai_compatible import Groq`` (and pickling by name).
    if name in ENDPOINTS:
        return _build(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# -- provider spec: what the registry, config, the server and --emulate know of the generic
# OpenAI-compatible provider (the named endpoints' specs are data, in .endpoints) --
from .spec import ProviderSpec  # noqa: E402  (kept with the spec, a block of its own)

#: OpenAICompatible's facts for the registry (:mod:`llmplex.providers.spec`); the OpenAI
#: emulator stands in for it
SPEC = ProviderSpec(
    name="OpenAICompatible",
    provider=f"{__name__}:OpenAICompatible",
    label=OpenAICompatible.label,
    capabilities=OpenAICompatible.capabilities,
    emulator="llmplex.emulators.openai:OpenAIEmulator",
    emulator_service="openai",
    emulator_path="/v1",
    emulator_options={"api_key": "sk-emulated"},
)
