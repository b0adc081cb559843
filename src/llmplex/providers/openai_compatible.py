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

from ..errors import (InvalidRequestError, LLMplexError, MissingAuthError,
                      ProviderConnectionError, ResponseError, StreamError)
from ..http.session import DEFAULT_TIMEOUT, Session
from ..prompt import filter_none, validate_messages
from ..types import Chunk, FinishReason, Messages, Usage
from .base import AsyncGeneratorProvider, ProviderModelMixin
from .endpoints import ENDPOINTS, Endpoint

__all__ = ["OpenAICompatible", "Endpoint", "ENDPOINTS", "endpoint_provider"]


class OpenAICompatible(AsyncGeneratorProvider, ProviderModelMixin):
    """A generic OpenAI Chat Completions client: pass ``base_url`` (with its path, e.g.
    ``http://localhost:11434/v1``) or set ``LLMPLEX_OPENAICOMPATIBLE_BASE_URL``."""

    label = "OpenAI-compatible API"
    url = "https://platform.openai.com/docs/api-reference/chat"
    working = True
    needs_auth = False
    supports_system_message = True
    supports_message_history = True
    default_model = ""
    #: the API base of the service, path included; "" means base_url= is required
    default_base_url: ClassVar[str] = ""
    #: environment variable read when no ``api_key`` is passed (None: none is read)
    api_key_env: ClassVar[str | None] = None
    local: ClassVar[bool] = False

    @classmethod
    def accepts_model(cls, model: str) -> bool:
        return bool(model)  # these services serve open-ended catalogues

    @classmethod
    def _base(cls, base_url: str | None) -> str:
        base = cls.resolve_base_url(base_url, cls.default_base_url)
        if not base:
            raise InvalidRequestError(
                f"base_url is required (e.g. http://localhost:11434/v1), or set "
                f"LLMPLEX_{cls.get_name().upper()}_BASE_URL", provider=cls.get_name())
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
                provider=cls.get_name())
        return result

    @classmethod
    async def create_async_generator(  # type: ignore[override]
        cls, model: str, messages: Messages | str, *,
        proxy: str | None = None, timeout: float | None = DEFAULT_TIMEOUT,
        base_url: str | None = None, api_key: str | None = None,
        temperature: float | None = None, top_p: float | None = None,
        max_tokens: int | None = None, stop: str | list[str] | None = None,
        seed: int | None = None, presence_penalty: float | None = None,
        frequency_penalty: float | None = None, response_format: Mapping[str, Any] | None = None,
        extra_body: Mapping[str, Any] | None = None, headers: Mapping[str, str] | None = None,
        **kwargs: Any,  # options of other providers: accepted, never sent
    ) -> AsyncIterator[Chunk]:
        """Stream a reply: text deltas, then ``Usage`` (when the server reports it), then
        ``FinishReason``. ``extra_body`` is merged into the request (a ``None`` value
        removes a key, e.g. ``{"stream_options": None}`` for servers that reject it)."""
        name = cls.get_name()
        model = cls.get_model(model)
        if not model:
            raise InvalidRequestError("a model name is required", provider=name)
        if stop is not None and not (isinstance(stop, str) or (
                isinstance(stop, (list, tuple)) and all(isinstance(s, str) for s in stop))):
            raise InvalidRequestError("stop must be a string or a list of strings", provider=name)
        body: dict[str, Any] = {
            "model": model,
            "messages": [{k: m[k] for k in ("role", "content", "name") if k in m}
                         for m in validate_messages(messages)],
            "stream": True,
            "stream_options": {"include_usage": True},
            **filter_none(temperature=temperature, top_p=top_p, max_tokens=max_tokens,
                          stop=list(stop) if isinstance(stop, tuple) else stop, seed=seed,
                          presence_penalty=presence_penalty, frequency_penalty=frequency_penalty,
                          response_format=dict(response_format) if response_format else None),
        }
        for key, value in (extra_body or {}).items():
            if value is None:
                body.pop(key, None)
            else:
                body[key] = value
        url = cls._base(base_url) + "/chat/completions"
        request_headers = cls._headers(api_key, headers)
        request_headers.setdefault("Accept", "text/event-stream, application/json")
        secret = _bearer(request_headers)

        usage: Usage | None = None
        finish: str | None = None
        done = False
        try:
            async with Session(name, proxy=proxy, headers=request_headers, timeout=timeout) as s:
                async with s.request("POST", url, json=body) as response:
                    if response.content_type == "application/json":
                        # A server that ignores "stream" answers with one chat.completion.
                        text, finish, usage = _parse(await s.read_json(response), "message", name)
                        if finish is None:
                            raise ResponseError("invalid chat.completion: no finish_reason",
                                                provider=name)
                        if text:
                            yield text
                    else:
                        try:
                            async for event in s.sse(response):
                                if event.data.strip() == "[DONE]":
                                    done = True
                                    break
                                try:
                                    data = event.json()
                                except ValueError:
                                    raise ResponseError(f"malformed stream event: "
                                                        f"{event.data[:200]!r}",
                                                        provider=name) from None
                                if event.event == "error":  # a named SSE error event
                                    data = {"error": data or "error event"}
                                text, reason, found = _parse(data, "delta", name)
                                finish = reason or finish
                                usage = found or usage
                                if text:
                                    yield text
                        except ProviderConnectionError:
                            if finish is None:
                                raise  # else the answer was complete: a lost [DONE] is harmless
        except LLMplexError as exc:
            _scrub(exc, secret)
            raise
        if not done and finish is None:
            raise ResponseError("stream ended early (no finish_reason and no [DONE])",
                                provider=name)
        if usage is not None:
            yield usage
        yield FinishReason(finish or "stop")

    @classmethod
    async def list_models(
        cls, *, base_url: str | None = None, api_key: str | None = None,
        proxy: str | None = None, timeout: float | None = DEFAULT_TIMEOUT,
        headers: Mapping[str, str] | None = None,
    ) -> list[str]:
        """The model ids the server lists at ``GET {base_url}/models``."""
        request_headers = cls._headers(api_key, headers)
        secret = _bearer(request_headers)
        try:
            async with Session(cls.get_name(), proxy=proxy, headers=request_headers,
                               timeout=timeout) as session:
                data = await session.json("GET", cls._base(base_url) + "/models")
        except LLMplexError as exc:
            _scrub(exc, secret)
            raise
        items = data.get("data") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise ResponseError("invalid model list (no 'data' array)", provider=cls.get_name())
        return [str(m["id"]) for m in items if isinstance(m, dict) and m.get("id")]


def _bearer(headers: Mapping[str, str]) -> str:
    """The token of the Authorization header (to scrub it from errors), or ``""``."""
    value = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
    return value.split(" ", 1)[-1].strip()


def _usage(data: dict[str, Any]) -> Usage | None:
    """A Usage from an OpenAI ``usage`` object (Groq puts it under ``x_groq``)."""
    groq = data.get("x_groq")
    raw = data.get("usage") or (groq.get("usage") if isinstance(groq, dict) else None)
    if not isinstance(raw, dict):
        return None
    try:
        prompt = int(raw.get("prompt_tokens") or 0)
        completion = int(raw.get("completion_tokens") or 0)
        return Usage(prompt, completion, int(raw.get("total_tokens") or prompt + completion))
    except (TypeError, ValueError):
        return None  # a server's odd usage object must not break a good answer


def _parse(data: Any, part: str, provider: str) -> tuple[str, str | None, Usage | None]:
    """(text, finish_reason, usage) of a stream chunk (``part="delta"``) or of a whole
    ``chat.completion`` (``part="message"``). An ``{"error": ...}`` object is a StreamError."""
    if not isinstance(data, dict):
        raise ResponseError(f"unexpected {part} data: {str(data)[:200]!r}", provider=provider)
    if data.get("error"):
        error = data["error"]
        raise StreamError(str(error.get("message") or error) if isinstance(error, dict)
                          else str(error), provider=provider)
    choice: dict[str, Any] = {}
    for item in data.get("choices") or ():  # a plain loop: this runs once per chunk
        if isinstance(item, dict) and item.get("index", 0) == 0:
            choice = item
            break
    content = (choice.get(part) or {}).get("content")
    usage = _usage(data) if "usage" in data or "x_groq" in data else None
    return (content if isinstance(content, str) else ""), choice.get("finish_reason"), usage


def _scrub(exc: LLMplexError, secret: str) -> None:
    """Remove the API key from ``exc`` in place, should a server have echoed it back."""
    if secret and (secret in exc.message or secret in (exc.body or "")):
        exc.message = exc.message.replace(secret, "***")
        exc.body = exc.body.replace(secret, "***") if exc.body else exc.body
        exc.args = (exc._render(),)


@functools.cache
def _build(name: str) -> type[OpenAICompatible]:
    e = ENDPOINTS[name]
    attrs = dict(label=e.label, url=e.url, default_model=e.default_model, needs_auth=e.needs_auth,
                 working=True, default_base_url=e.base_url, api_key_env=e.api_key_env,
                 local=e.local, api_endpoint=e.base_url + "/chat/completions",
                 __module__=__name__, __doc__=f"{e.label}: OpenAI-compatible API at {e.base_url}.")
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
