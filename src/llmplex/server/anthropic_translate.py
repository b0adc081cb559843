"""Anthropic's Messages API request -> ``chat.completions.create`` arguments (the
translation :mod:`llmplex.server.anthropic_api` describes), and an estimate of its input
tokens."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..client import AsyncClient
from ..errors import InvalidRequestError
from ..limits import estimate_tokens
from .errors import APIError

__all__ = ["all_anthropic", "anthropic_param", "chat_arguments", "estimate_input"]

_FIELDS = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "system",
        "stream",
        "temperature",
        "top_p",
        "top_k",
        "stop_sequences",
        "tools",
        "tool_choice",
        "metadata",
        "thinking",
        "cache_control",
    }
)
#: tool types whose calls come back as ordinary tool_use blocks (run by the client)
_CLIENT_TOOLS = ("bash_", "text_editor_", "computer_")


class _Invalid(APIError):
    """A 400 naming the field of the Anthropic-shaped body."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(400, f"{param}: {message}", code="invalid_value", param=param)


# -- Anthropic's request -> chat.completions.create arguments ---------------------------


def _text(value: Any, param: str) -> str:
    if not isinstance(value, str):
        raise _Invalid(param, "expected a string")
    return value


def _system(system: Any) -> list[dict[str, Any]]:
    if system is None:
        return []
    if isinstance(system, str):
        return [{"role": "system", "content": system}] if system else []
    if not isinstance(system, list):
        raise _Invalid("system", "expected a string or a list of text blocks")
    parts = []
    for i, block in enumerate(system):
        if not isinstance(block, dict) or block.get("type") != "text":
            raise _Invalid(f"system.{i}.type", "system blocks are text blocks")
        parts.append({"type": "text", "text": _text(block.get("text"), f"system.{i}.text")})
    return [{"role": "system", "content": parts}] if parts else []


def _image(block: Mapping[str, Any], param: str) -> dict[str, Any]:
    source = block.get("source")
    kind = source.get("type") if isinstance(source, dict) else None
    if kind == "base64":
        media = _text(source.get("media_type"), f"{param}.source.media_type")  # type: ignore[union-attr]
        data = _text(source.get("data"), f"{param}.source.data")  # type: ignore[union-attr]
        return {"type": "image_url", "image_url": {"url": f"data:{media};base64,{data}"}}
    if kind == "url":
        url = _text(source.get("url"), f"{param}.source.url")  # type: ignore[union-attr]
        return {"type": "image_url", "image_url": {"url": url}}
    raise _Invalid(f"{param}.source.type", f"expected 'base64' or 'url', got {kind!r}")


def _document(block: Mapping[str, Any], param: str) -> dict[str, Any]:
    """A ``document`` block: a PDF (base64) as a ``file`` part, plain text as text."""
    source = block.get("source")
    kind = source.get("type") if isinstance(source, dict) else None
    if kind == "base64" and source.get("media_type") == "application/pdf":  # type: ignore[union-attr]
        data = _text(source.get("data"), f"{param}.source.data")  # type: ignore[union-attr]
        return {
            "type": "file",
            "file": {
                "file_data": f"data:application/pdf;base64,{data}",
                "filename": str(block.get("title") or "document.pdf"),
            },
        }
    if kind == "text":
        return {
            "type": "text",
            "text": _text(
                source.get("data"),  # type: ignore[union-attr]
                f"{param}.source.data",
            ),
        }
    raise _Invalid(
        f"{param}.source",
        "documents here are base64 PDFs or text (other sources go to Anthropic only)",
    )


def _tool_result(
    block: Mapping[str, Any], param: str, lenient: bool, media: list[dict[str, Any]]
) -> dict[str, Any]:
    """The ``tool`` message of a ``tool_result`` block. OpenAI's tool messages take text
    only: its images and documents are appended to ``media``, to follow in the user's
    turn."""
    call_id = _text(block.get("tool_use_id"), f"{param}.tool_use_id")
    content = block.get("content", "")
    if isinstance(content, str):
        text = content
    elif isinstance(content, list):
        pieces = []
        for k, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else None
            where = f"{param}.content.{k}"
            if kind == "text":
                pieces.append(_text(part.get("text"), f"{where}.text"))
            elif kind == "image":
                media.append(_image(part, where))
            elif kind == "document":
                media.append(_document(part, where))
            elif not lenient:
                raise _Invalid(
                    f"{where}.type", f"a {kind!r} block in a tool result can only go to Anthropic"
                )
        text = "\n".join(pieces)
    else:
        raise _Invalid(f"{param}.content", "expected a string or a list of blocks")
    if block.get("is_error"):
        text = f"Error: {text}"
    return {"role": "tool", "tool_call_id": call_id, "content": text}


def _messages(messages: Any, lenient: bool) -> list[dict[str, Any]]:
    if not isinstance(messages, list) or not messages:
        raise _Invalid("messages", "expected a non-empty list of messages")
    out: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        where = f"messages.{i}"
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("user", "assistant"):
            raise _Invalid(f"{where}.role", "expected 'user' or 'assistant'")
        content = message.get("content")
        if isinstance(content, str):
            out.append({"role": role, "content": content})
            continue
        if not isinstance(content, list):
            raise _Invalid(f"{where}.content", "expected a string or a list of blocks")
        parts: list[dict[str, Any]] = []
        calls: list[dict[str, Any]] = []
        results: list[dict[str, Any]] = []
        media: list[dict[str, Any]] = []  # the tool results' images and documents
        for j, block in enumerate(content):
            param = f"{where}.content.{j}"
            kind = block.get("type") if isinstance(block, dict) else None
            if kind == "text":
                parts.append({"type": "text", "text": _text(block.get("text"), f"{param}.text")})
            elif kind == "image" and role == "user":
                parts.append(_image(block, param))
            elif kind == "document" and role == "user":
                parts.append(_document(block, param))
            elif kind == "tool_use" and role == "assistant":
                arguments = block.get("input", {})
                if not isinstance(arguments, dict):
                    raise _Invalid(f"{param}.input", "expected an object")
                calls.append(
                    {
                        "id": _text(block.get("id"), f"{param}.id"),
                        "type": "function",
                        "function": {
                            "name": _text(block.get("name"), f"{param}.name"),
                            "arguments": json.dumps(arguments, ensure_ascii=False),
                        },
                    }
                )
            elif kind == "tool_result" and role == "user":
                results.append(_tool_result(block, param, lenient, media))
            elif kind in ("thinking", "redacted_thinking") and role == "assistant":
                continue  # earlier turns' thinking: see the module docstring
            elif lenient:
                continue  # the Anthropic provider gets the block itself (pass-through)
            else:
                raise _Invalid(
                    f"{param}.type", f"a {kind!r} block in a {role} message is not supported here"
                )
        # OpenAI's shape: tool results are messages of their own, before the user's words
        out.extend(results)
        parts = media + parts
        if role == "assistant":
            if parts or calls:
                out.append(
                    {
                        "role": "assistant",
                        "content": parts or None,
                        **({"tool_calls": calls} if calls else {}),
                    }
                )
        elif parts:
            out.append({"role": "user", "content": parts})
    return out


def _tools(tools: Any, lenient: bool) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise _Invalid("tools", "expected a list of tools")
    out = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise _Invalid(f"tools.{i}", "expected an object")
        kind = tool.get("type")
        name = _text(tool.get("name"), f"tools.{i}.name")
        if kind not in (None, "custom"):
            if not (lenient and str(kind).startswith(_CLIENT_TOOLS)):
                raise _Invalid(
                    f"tools.{i}.type",
                    f"the tool type {kind!r} ({name}) is not "
                    "supported: only custom tools (name, description, "
                    "input_schema) are served here",
                )
            out.append({"type": "function", "function": {"name": name}})
            continue
        schema = tool.get("input_schema")
        if not isinstance(schema, dict):
            raise _Invalid(f"tools.{i}.input_schema", "expected a JSON Schema object")
        function: dict[str, Any] = {"name": name, "parameters": schema}
        if tool.get("description") is not None:
            function["description"] = _text(tool["description"], f"tools.{i}.description")
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(choice: Any, arguments: dict[str, Any]) -> None:
    if not isinstance(choice, dict):
        raise _Invalid("tool_choice", "expected an object with a type")
    kind = choice.get("type")
    if kind == "auto":
        arguments["tool_choice"] = "auto"
    elif kind == "any":
        arguments["tool_choice"] = "required"
    elif kind == "none":
        arguments["tool_choice"] = "none"
    elif kind == "tool":
        name = _text(choice.get("name"), "tool_choice.name")
        arguments["tool_choice"] = {"type": "function", "function": {"name": name}}
    else:
        raise _Invalid("tool_choice.type", f"expected auto, any, tool or none, got {kind!r}")
    if choice.get("disable_parallel_tool_use") and kind != "none":
        arguments["parallel_tool_calls"] = False


def _thinking(thinking: Any, arguments: dict[str, Any], native: bool) -> None:
    if not isinstance(thinking, dict) or thinking.get("type") not in ("enabled", "disabled"):
        raise _Invalid("thinking.type", "expected 'enabled' or 'disabled'")
    if thinking["type"] == "disabled":
        return
    budget = thinking.get("budget_tokens")
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1024:
        raise _Invalid("thinking.budget_tokens", "expected an integer of at least 1024")
    if native:
        arguments["thinking"] = dict(thinking)
    else:
        arguments["reasoning_effort"] = (
            "low" if budget <= 2048 else "medium" if budget <= 8192 else "high"
        )


def chat_arguments(body: Any, *, count_only: bool = False, native: bool = False) -> dict[str, Any]:
    """``chat.completions.create`` keyword arguments for a Messages API body (see the
    module docstring). ``native``: every route is the Anthropic provider, which also
    gets the body itself; what only it takes is then not refused here."""
    if not isinstance(body, dict):
        raise _Invalid("body", "expected a JSON object")
    unknown = [name for name in body if name not in _FIELDS]
    if unknown and not native:
        raise _Invalid(unknown[0], "Extra inputs are not permitted")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _Invalid("model", "Field required (a model name)")
    messages = _system(body.get("system")) + _messages(body.get("messages"), native)
    if not messages:
        raise _Invalid("messages", "no content to answer")
    arguments: dict[str, Any] = {"model": model, "messages": messages}
    max_tokens = body.get("max_tokens")
    if not count_only or max_tokens is not None:
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise _Invalid("max_tokens", "Field required (an integer of at least 1)")
        arguments["max_tokens"] = max_tokens
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            value = body[name]
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not (0 <= value <= 1)
            ):
                raise _Invalid(name, "expected a number from 0 to 1")
            arguments[name] = value
    if body.get("top_k") is not None:
        top_k = body["top_k"]
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
            raise _Invalid("top_k", "expected a non-negative integer")
        arguments["top_k"] = top_k
    stops = body.get("stop_sequences")
    if stops is not None:
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise _Invalid("stop_sequences", "expected a list of strings")
        if len(stops) > 4 and not native:
            raise _Invalid("stop_sequences", "at most 4 stop sequences (besides on Anthropic)")
        if stops and len(stops) <= 4:
            arguments["stop"] = stops
    if body.get("tools"):
        arguments["tools"] = _tools(body["tools"], native)
    if body.get("tool_choice") is not None:
        _tool_choice(body["tool_choice"], arguments)
    metadata = body.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise _Invalid("metadata", "expected an object")
        for key, value in metadata.items():
            if key != "user_id":
                raise _Invalid(f"metadata.{key}", "Extra inputs are not permitted")
            if value is not None:
                arguments["user"] = _text(value, "metadata.user_id")
    if body.get("thinking") is not None:
        _thinking(body["thinking"], arguments, native)
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise _Invalid("stream", "expected a boolean")
    return arguments


#: llmplex's parameter names -> Anthropic's, for errors about a translated field
_PARAMS = {
    "stop": "stop_sequences",
    "reasoning_effort": "thinking",
    "user": "metadata.user_id",
    "parallel_tool_calls": "tool_choice.disable_parallel_tool_use",
}


def anthropic_param(exc: InvalidRequestError) -> InvalidRequestError:
    """``exc`` about a field the translation made, told with the caller's name for it
    (``thinking`` rather than ``reasoning_effort``)."""
    ours = exc.param or ""
    name = _PARAMS.get(ours)
    if name is None:
        return exc
    message = exc.message.replace(f"'{ours}'", f"'{name}'")
    if message.startswith(ours):
        message = name + message[len(ours) :]
    elif f"'{name}'" not in message:
        message = f"{name}: {message}"
    return InvalidRequestError(message, param=name, provider=exc.provider)


def all_anthropic(client: AsyncClient, model: str) -> bool:
    """Whether every route for ``model`` is the Anthropic provider (pass-through)."""
    routes = client.router.resolve(model)
    return bool(routes) and all(r.provider.get_name() == "Anthropic" for r in routes)


def estimate_input(body: Mapping[str, Any]) -> int:
    """An estimate of a request's input tokens (:func:`llmplex.limits.estimate_tokens` of
    its text): the system's and the messages' text, tool inputs and results, the tool
    definitions as JSON, and about 1,600 tokens per image (what Anthropic bills a
    mid-sized one)."""
    pieces: list[str] = []
    images = 0

    def walk(value: Any) -> None:
        nonlocal images
        if isinstance(value, str):
            pieces.append(value)
        elif isinstance(value, list):
            for item in value:
                walk(item)
        elif isinstance(value, dict):
            if value.get("type") == "image":
                images += 1
                return
            for key in ("text", "thinking", "content", "input"):
                if key in value:
                    item = value[key]
                    walk(json.dumps(item) if key == "input" else item)

    walk(body.get("system"))
    walk(body.get("messages"))
    if body.get("tools"):
        pieces.append(json.dumps(body["tools"], ensure_ascii=False))
    return estimate_tokens("".join(pieces)) + 1600 * images
