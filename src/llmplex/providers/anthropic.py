"""Anthropic's Messages API (``Anthropic``): Claude models, native tools, images, thinking.

Wire protocol: one JSON ``POST {origin}/v1/messages`` with ``"stream": true``, headers
``x-api-key`` and ``anthropic-version: 2023-06-01``, answered by named SSE events:
``message_start`` (the message's id, model and input usage), per content block
``content_block_start`` / ``content_block_delta`` (``text_delta``, ``input_json_delta``,
``thinking_delta``, ``signature_delta``) / ``content_block_stop``, ``message_delta`` (the
``stop_reason`` and the output usage), ``message_stop``; ``ping`` at any time, ``error``
in the stream (``{"type": "error", "error": {"type", "message"}}``). Errors before the
stream have the same body with the status: 529 ``overloaded_error`` is a
:class:`~llmplex.errors.RateLimitError` (status 529, retryable like a 429), 401/403 a
:class:`~llmplex.errors.MissingAuthError`, others by status as everywhere.

Requests arrive in OpenAI's shape and are translated (:func:`anthropic_body_for`): system and
developer messages become ``system`` text blocks, ``image_url`` parts ``image`` blocks
(``data:`` URLs as base64 sources, http(s) as url sources), assistant ``tool_calls``
``tool_use`` blocks, ``tool`` messages ``tool_result`` blocks of a user turn; ``stop`` is
``stop_sequences``, ``tool_choice`` / ``parallel_tool_calls`` Anthropic's ``tool_choice``,
``reasoning_effort`` a ``thinking`` budget (:data:`THINKING_BUDGETS`), ``user`` (or
``metadata.user_id``) ``metadata.user_id``. Anthropic's own ``thinking`` and ``top_k``
are options too. ``max_tokens`` is required by the API: :data:`DEFAULT_MAX_TOKENS` when
none is given.

``anthropic_body`` is the pass-through: a Messages API request as a caller sent it
(``llmplex serve``'s ``/v1/messages`` gives it when every route of a request is this
provider), sent verbatim — system blocks, ``cache_control``, thinking blocks with their
signatures, ``is_error`` — with only ``model`` (the resolved name) and ``stream`` set
here; ``messages`` and the other fields then only describe it to llmplex (routing,
conversations). ``anthropic_beta`` is sent as the ``anthropic-beta`` header.

Answers: text deltas; thinking as :class:`~llmplex.types.ReasoningDelta`, its signature
as :class:`~llmplex.types.ReasoningSignature` (``redacted_thinking`` blocks are not
passed on: llmplex's events have no place for their data); tool calls as
:class:`~llmplex.types.ToolCallDelta`; :class:`~llmplex.types.Usage` with
``prompt_tokens`` = input + cache read + cache write tokens (OpenAI counts them all),
``prompt_tokens_details`` ``{"cached_tokens": read, "cache_write_tokens": written}``;
stop reasons as finish reasons (:data:`FINISH_REASONS`).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, ClassVar

from ..capabilities import Capabilities
from ..errors import (
    InvalidRequestError,
    MissingAuthError,
    RateLimitError,
    ResponseError,
    StreamError,
)
from ..http.session import DEFAULT_TIMEOUT, Session
from ..http.status import (
    BODY_LIMIT,
    error_for_status,
    extract_message,
    parse_retry_after,
)
from ..prompt import validate_messages
from ..types import (
    Chunk,
    FinishReason,
    Messages,
    ReasoningDelta,
    ReasoningSignature,
    ResponseMeta,
    ToolCallDelta,
    Usage,
)
from .base import AsyncGeneratorProvider, ProviderModelMixin

__all__ = [
    "API_VERSION",
    "DEFAULT_MAX_TOKENS",
    "FINISH_REASONS",
    "THINKING_BUDGETS",
    "Anthropic",
    "anthropic_body_for",
    "anthropic_messages",
    "count_tokens",
    "status_error",
]

_ORIGIN = "https://api.anthropic.com"
API_VERSION = "2023-06-01"
#: ``max_tokens`` sent when the request gives none (the API requires one)
DEFAULT_MAX_TOKENS = 4096
#: ``reasoning_effort`` -> thinking ``budget_tokens``
THINKING_BUDGETS = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 24576}
#: Anthropic ``stop_reason`` -> llmplex finish reason
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "pause_turn": "stop",
    "refusal": "content_filter",
    "model_context_window_exceeded": "length",
}


class Anthropic(AsyncGeneratorProvider, ProviderModelMixin):
    """Anthropic's Messages API; needs an API key (``api_key=`` or ``ANTHROPIC_API_KEY``).
    ``base_url`` (or ``LLMPLEX_ANTHROPIC_BASE_URL``) replaces the origin, as
    ``ANTHROPIC_BASE_URL`` does for Anthropic's SDK."""

    label = "Anthropic"
    url = "https://www.anthropic.com"
    login_url = "https://console.anthropic.com/settings/keys"
    api_endpoint = _ORIGIN + "/v1/messages"
    working = True
    needs_auth = True
    capabilities = Capabilities(tools="native", images=True, reasoning=True, system_message=True)
    default_model = "claude-sonnet-4-5"
    #: names served without a prefix (with one, ``anthropic:claude-...``, any Claude name)
    models: ClassVar[list[str]] = [
        "claude-sonnet-4-5",
        "claude-opus-4-5",
        "claude-haiku-4-5",
        "claude-opus-4-1",
        "claude-sonnet-4-5-20250929",
        "claude-opus-4-5-20251101",
        "claude-haiku-4-5-20251001",
        "claude-opus-4-1-20250805",
        "claude-opus-4-20250514",
        "claude-sonnet-4-20250514",
        "claude-3-7-sonnet-20250219",
        "claude-3-7-sonnet-latest",
        "claude-3-5-haiku-20241022",
        "claude-3-5-haiku-latest",
    ]
    api_key_env: ClassVar[str] = "ANTHROPIC_API_KEY"

    @classmethod
    def accepts_model(cls, model: str) -> bool:
        """Every Claude model name (dated snapshots, new releases) is served."""
        return model.startswith("claude-")

    @classmethod
    def _headers(
        cls, api_key: str | None, headers: Mapping[str, str] | None, beta: str | None
    ) -> dict[str, str]:
        """A fresh header dict per call: the key, the API version, the betas."""
        out = dict(headers or {})
        key = api_key or os.environ.get(cls.api_key_env)
        if key:
            out["x-api-key"] = key
        elif not any(h.lower() in ("x-api-key", "authorization") for h in out):
            raise MissingAuthError(
                f"no API key: pass api_key= or set {cls.api_key_env}", provider=cls.get_name()
            )
        out.setdefault("anthropic-version", API_VERSION)
        if beta:
            out["anthropic-beta"] = beta
        return out

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
        temperature: float | None = None,
        top_p: float | None = None,
        top_k: int | None = None,
        max_tokens: int | None = None,
        stop: str | list[str] | None = None,
        tools: list[Mapping[str, Any]] | None = None,
        tool_choice: Any = None,
        parallel_tool_calls: bool | None = None,
        reasoning_effort: str | None = None,
        thinking: Mapping[str, Any] | None = None,
        user: str | None = None,
        metadata: Mapping[str, str] | None = None,
        anthropic_body: Mapping[str, Any] | None = None,
        anthropic_beta: str | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[Chunk]:
        """Stream a reply: text deltas, reasoning, tool-call fragments, the upstream's
        model id, then ``Usage`` and the ``FinishReason``."""
        cls.reject_unknown(kwargs)
        name = cls.get_name()
        model = cls.get_model(model)
        if anthropic_body is not None:
            if not isinstance(anthropic_body, Mapping):
                raise InvalidRequestError(
                    "anthropic_body must be an object", provider=name, param="anthropic_body"
                )
            body = {**anthropic_body, "model": model, "stream": True}
        else:
            body = anthropic_body_for(
                model,
                messages,
                provider=name,
                temperature=temperature,
                top_p=top_p,
                top_k=top_k,
                max_tokens=max_tokens,
                stop=stop,
                tools=tools,
                tool_choice=tool_choice,
                parallel_tool_calls=parallel_tool_calls,
                reasoning_effort=reasoning_effort,
                thinking=thinking,
                user=user,
                metadata=metadata,
            )
        request_headers = cls._headers(api_key, headers, anthropic_beta)
        request_headers.setdefault("Accept", "text/event-stream")
        url = cls.resolve_base_url(base_url, _ORIGIN) + "/v1/messages"
        reader = _Reader(name)
        async with (
            Session(name, proxy=proxy, headers=request_headers, timeout=timeout) as s,
            s.request("POST", url, json=body, check=False) as response,
        ):
            if response.status >= 400:
                raw = await response.content.read(BODY_LIMIT * 4)
                raise s.scrub(
                    status_error(
                        response.status,
                        raw.decode("utf-8", "replace"),
                        name,
                        response.headers.get("retry-after"),
                    )
                )
            async for event in s.sse(response):
                for item in reader.event(event.event, event.data):
                    yield item
                if reader.stopped:
                    break
        if not reader.stopped:
            raise ResponseError("stream ended early (no message_stop)", provider=name)
        yield reader.usage()
        yield FinishReason(FINISH_REASONS.get(reader.stop_reason or "", "stop"))


#: fields of a Messages request that ``count_tokens`` does not take
_NOT_COUNTED = (
    "max_tokens",
    "stream",
    "temperature",
    "top_p",
    "top_k",
    "stop_sequences",
    "metadata",
    "service_tier",
)


async def count_tokens(
    model: str,
    body: Mapping[str, Any],
    *,
    proxy: str | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
    base_url: str | None = None,
    api_key: str | None = None,
    headers: Mapping[str, str] | None = None,
    anthropic_beta: str | None = None,
    **_: Any,
) -> int:
    """The input tokens of a Messages API request, as Anthropic counts them
    (``POST /v1/messages/count_tokens``); options as the provider's (others are not
    about counting and are ignored)."""
    provider = Anthropic.get_name()
    request_headers = Anthropic._headers(api_key, headers, anthropic_beta)
    request_headers["Accept"] = "application/json"
    payload = {k: v for k, v in body.items() if k not in _NOT_COUNTED}
    payload["model"] = Anthropic.get_model(model)
    url = Anthropic.resolve_base_url(base_url, _ORIGIN) + "/v1/messages/count_tokens"
    async with (
        Session(provider, proxy=proxy, headers=request_headers, timeout=timeout) as s,
        s.request("POST", url, json=payload, check=False) as response,
    ):
        if response.status >= 400:
            raw = await response.content.read(BODY_LIMIT * 4)
            raise s.scrub(
                status_error(
                    response.status,
                    raw.decode("utf-8", "replace"),
                    provider,
                    response.headers.get("retry-after"),
                )
            )
        data = await s.read_json(response)
    tokens = data.get("input_tokens") if isinstance(data, dict) else None
    if isinstance(tokens, bool) or not isinstance(tokens, int):
        raise ResponseError("count_tokens answered no input_tokens", provider=provider)
    return tokens


def status_error(status: int, body: str, provider: str, retry_after: str | None) -> Exception:
    """The llmplex error for an error answer of the Messages API: 529 (``overloaded``)
    is a RateLimitError, retryable; the rest by status."""
    if status == 529:
        return RateLimitError(
            extract_message(body) or "Overloaded",
            provider=provider,
            status=529,
            body=body[:BODY_LIMIT],
            retry_after=parse_retry_after(retry_after),
        )
    return error_for_status(status, body, provider=provider, retry_after=retry_after)


def _stream_error(data: Any, provider: str) -> Exception:
    error = data.get("error") if isinstance(data, dict) else None
    kind = error.get("type") if isinstance(error, dict) else None
    message = str(error.get("message") or kind) if isinstance(error, dict) else str(data)[:200]
    if kind == "overloaded_error":
        return RateLimitError(message, provider=provider, status=529)
    if kind == "rate_limit_error":
        return RateLimitError(message, provider=provider, status=429)
    return StreamError(f"{kind}: {message}" if kind else message, provider=provider)


class _Reader:
    """Turns the Messages API's stream events into llmplex chunks."""

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self.blocks: dict[int, tuple[str, int]] = {}  # block index -> (type, tool index)
        self.tools = 0
        self.input = self.cache_read = self.cache_write = self.output = 0
        self.stop_reason: str | None = None
        self.stopped = False

    def event(self, name: str, text: str) -> list[Chunk]:
        if name == "ping":
            return []
        try:
            data = json.loads(text)
        except ValueError:
            raise ResponseError(
                f"malformed stream event: {text[:200]!r}", provider=self.provider
            ) from None
        kind = data.get("type") if isinstance(data, dict) else None
        if name == "error" or kind == "error":
            raise _stream_error(data, self.provider)
        if kind == "content_block_delta":
            return self._delta(data)
        if kind == "content_block_start":
            return self._start(data)
        if kind == "message_start":
            message = data.get("message") or {}
            self._usage(message.get("usage"))
            model = message.get("model")
            return [ResponseMeta(model)] if isinstance(model, str) and model else []
        if kind == "message_delta":
            self.stop_reason = (data.get("delta") or {}).get("stop_reason") or self.stop_reason
            self._usage(data.get("usage"))
        elif kind == "message_stop":
            self.stopped = True
        return []  # content_block_stop, and event types added later

    def _start(self, data: dict[str, Any]) -> list[Chunk]:
        block = data.get("content_block") or {}
        index = data.get("index", 0)
        kind = block.get("type")
        if kind == "tool_use":
            position = self.tools
            self.tools += 1
            self.blocks[index] = ("tool_use", position)
            given = block.get("input")
            # The input streams as input_json_delta; a whole one here (non-empty) is sent.
            arguments = json.dumps(given, separators=(",", ":")) if given else ""
            return [ToolCallDelta(position, block.get("id"), block.get("name"), arguments)]
        self.blocks[index] = (str(kind), 0)
        if kind == "text" and block.get("text"):
            return [block["text"]]
        if kind == "thinking":
            out: list[Chunk] = []
            if block.get("thinking"):
                out.append(ReasoningDelta(block["thinking"]))
            if block.get("signature"):
                out.append(ReasoningSignature(block["signature"]))
            return out
        if kind not in ("text", "thinking", "redacted_thinking"):
            raise ResponseError(
                f"content block of type {kind!r}, which llmplex cannot pass on",
                provider=self.provider,
            )
        return []

    def _delta(self, data: dict[str, Any]) -> list[Chunk]:
        delta = data.get("delta") or {}
        kind = delta.get("type")
        if kind == "text_delta":
            text = delta.get("text")
            return [text] if text else []
        if kind == "input_json_delta":
            piece = delta.get("partial_json") or ""
            block = self.blocks.get(data.get("index", 0))
            if not piece or block is None:
                return []
            return [ToolCallDelta(block[1], arguments=piece)]
        if kind == "thinking_delta":
            text = delta.get("thinking")
            return [ReasoningDelta(text)] if text else []
        if kind == "signature_delta":
            signature = delta.get("signature")
            return [ReasoningSignature(signature)] if signature else []
        return []  # citations_delta: no place for citations in llmplex's events

    def _usage(self, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        # message_delta counts are cumulative: they replace message_start's
        for key, attr in (
            ("input_tokens", "input"),
            ("cache_read_input_tokens", "cache_read"),
            ("cache_creation_input_tokens", "cache_write"),
            ("output_tokens", "output"),
        ):
            value = usage.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                setattr(self, attr, value)

    def usage(self) -> Usage:
        details = None
        if self.cache_read or self.cache_write:
            details = {"cached_tokens": self.cache_read, "cache_write_tokens": self.cache_write}
        return Usage(
            self.input + self.cache_read + self.cache_write,
            self.output,
            prompt_tokens_details=details,
        )


# -- OpenAI's shape -> the Messages API -----------------------------------------------------


def _bad(param: str, message: str, provider: str) -> InvalidRequestError:
    return InvalidRequestError(f"{param}: {message}", param=param, provider=provider)


def anthropic_body_for(
    model: str,
    messages: Messages | str,
    *,
    provider: str = "Anthropic",
    temperature: float | None = None,
    top_p: float | None = None,
    top_k: int | None = None,
    max_tokens: int | None = None,
    stop: str | Sequence[str] | None = None,
    tools: Sequence[Mapping[str, Any]] | None = None,
    tool_choice: Any = None,
    parallel_tool_calls: bool | None = None,
    reasoning_effort: str | None = None,
    thinking: Mapping[str, Any] | None = None,
    user: str | None = None,
    metadata: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The Messages API request for an OpenAI-shaped one (see the module docstring)."""
    system, turns = anthropic_messages(validate_messages(messages), provider)
    body: dict[str, Any] = {"model": model, "messages": turns, "stream": True}
    if system:
        body["system"] = system
    if thinking is None and reasoning_effort is not None:
        budget = THINKING_BUDGETS.get(reasoning_effort)
        if budget is None:
            if reasoning_effort != "none":
                raise _bad(
                    "reasoning_effort",
                    f"expected one of {', '.join(THINKING_BUDGETS)}"
                    f" or none, got {reasoning_effort!r}",
                    provider,
                )
        else:
            thinking = {"type": "enabled", "budget_tokens": budget}
    budget = (
        (thinking or {}).get("budget_tokens") if (thinking or {}).get("type") == "enabled" else None
    )
    if max_tokens is None:
        max_tokens = DEFAULT_MAX_TOKENS + (budget if isinstance(budget, int) else 0)
    body["max_tokens"] = max_tokens
    if thinking is not None:
        body["thinking"] = dict(thinking)
    if temperature is not None:
        if not 0 <= temperature <= 1:
            raise _bad("temperature", f"Anthropic takes 0 to 1, got {temperature!r}", provider)
        body["temperature"] = temperature
    if top_p is not None:
        body["top_p"] = top_p
    if top_k is not None:
        body["top_k"] = top_k
    if stop is not None:
        body["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if tools:
        body["tools"] = [_tool(t, i, provider) for i, t in enumerate(tools)]
    choice = _tool_choice(tool_choice, parallel_tool_calls, provider)
    if choice is not None:
        body["tool_choice"] = choice
    meta = dict(metadata or {})
    if user is not None:
        meta.setdefault("user_id", user)
    if meta:
        extra = [k for k in meta if k != "user_id"]
        if extra:
            raise _bad(f"metadata.{extra[0]}", "Anthropic's metadata takes user_id only", provider)
        body["metadata"] = meta
    return body


def _tool(tool: Mapping[str, Any], index: int, provider: str) -> dict[str, Any]:
    if tool.get("type") != "function":
        raise _bad(
            f"tools[{index}].type",
            f"Anthropic takes function tools, not {tool.get('type')!r}",
            provider,
        )
    function = tool["function"]
    out: dict[str, Any] = {
        "name": function["name"],
        "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
    }
    if function.get("description"):
        out["description"] = function["description"]
    return out


def _tool_choice(choice: Any, parallel: bool | None, provider: str) -> dict[str, Any] | None:
    if choice is None and parallel is None:
        return None
    if choice is None or choice == "auto":
        out: dict[str, Any] = {"type": "auto"}
    elif choice == "required":
        out = {"type": "any"}
    elif choice == "none":
        out = {"type": "none"}
    elif isinstance(choice, Mapping) and choice.get("type") == "function":
        out = {"type": "tool", "name": choice["function"]["name"]}
    else:
        raise _bad("tool_choice", f"Anthropic cannot take {choice!r}", provider)
    if parallel is False and out["type"] != "none":
        out["disable_parallel_tool_use"] = True
    return out


def anthropic_messages(
    messages: Sequence[Mapping[str, Any]], provider: str = "Anthropic"
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(system blocks, messages)`` of the Messages API for OpenAI-shaped messages.
    System and developer messages, wherever they are, join the system blocks in order;
    consecutive turns of one role (tool results and the user's next words) are merged."""
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        role = message["role"]
        where = f"messages[{i}]"
        if message.get("name") is not None:
            raise _bad(f"{where}.name", "Anthropic's messages have no names", provider)
        if role in ("system", "developer"):
            system.extend(
                _blocks(message.get("content"), f"{where}.content", provider, text_only=True)
            )
            continue
        if role == "tool":
            blocks = [
                {
                    "type": "tool_result",
                    "tool_use_id": message["tool_call_id"],
                    "content": _blocks(
                        message.get("content"), f"{where}.content", provider, text_only=True
                    ),
                }
            ]
            role = "user"
        elif role == "assistant":
            blocks = _blocks(message.get("content"), f"{where}.content", provider, text_only=True)
            for j, call in enumerate(message.get("tool_calls") or ()):
                function = call.get("function") or {}
                try:
                    arguments = json.loads(function.get("arguments") or "{}")
                except ValueError:
                    raise _bad(
                        f"{where}.tool_calls[{j}].function.arguments", "not valid JSON", provider
                    ) from None
                if not isinstance(arguments, dict):
                    raise _bad(
                        f"{where}.tool_calls[{j}].function.arguments",
                        "Anthropic takes a JSON object",
                        provider,
                    )
                blocks.append(
                    {
                        "type": "tool_use",
                        "id": call.get("id"),
                        "name": function.get("name"),
                        "input": arguments,
                    }
                )
        elif role == "user":
            blocks = _blocks(message.get("content"), f"{where}.content", provider)
        else:
            raise _bad(f"{where}.role", f"Anthropic takes no {role!r} messages", provider)
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return system, turns


def _blocks(
    content: Any, where: str, provider: str, text_only: bool = False
) -> list[dict[str, Any]]:
    if content is None or content == "":
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    blocks: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        kind = part.get("type")
        if kind == "text":
            block = {"type": "text", "text": part["text"]}
            if part.get("cache_control") is not None:  # OpenRouter's convention
                block["cache_control"] = part["cache_control"]
            blocks.append(block)
        elif kind == "image_url" and not text_only:
            blocks.append(_image(part.get("image_url") or {}, f"{where}[{j}]", provider))
        else:
            raise _bad(
                f"{where}[{j}].type", f"Anthropic cannot take a {kind!r} part here", provider
            )
    return blocks


def _image(image: Mapping[str, Any], where: str, provider: str) -> dict[str, Any]:
    url = str(image.get("url") or "")
    if url.startswith("data:"):
        head, _, data = url[5:].partition(",")
        media, _, encoding = head.partition(";")
        if encoding != "base64" or not data:
            raise _bad(f"{where}.image_url.url", "a data: URL must be base64", provider)
        return {"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}
    if url.startswith(("http://", "https://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise _bad(f"{where}.image_url.url", "expected a data: or http(s) URL", provider)


# -- provider spec: what the registry, config, the server and --emulate know of Anthropic --
from .spec import ProviderSpec  # noqa: E402  (kept with the spec, a block of its own)

#: Anthropic's facts for the registry (:mod:`llmplex.providers.spec`)
SPEC = ProviderSpec(
    name="Anthropic",
    provider=f"{__name__}:Anthropic",
    label=Anthropic.label,
    base_url=_ORIGIN,
    key_env=(Anthropic.api_key_env,),
    capabilities=Anthropic.capabilities,
    models=tuple(Anthropic.models),
    aliases=Anthropic.model_aliases,
    emulator="llmplex.emulators.anthropic:AnthropicEmulator",
    emulator_options={"api_key": "sk-ant-emulated"},
)
