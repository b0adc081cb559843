"""Messages: validation of OpenAI's full message shape, and prompt helpers for text-only
services. None of them mutates its arguments.

A message is ``{"role", "content"}`` plus, where they apply, ``name``, an assistant's
``tool_calls`` (its ``content`` may then be None) and a tool message's ``tool_call_id``.
``content`` is a string or a list of parts: ``text`` (any role), ``image_url``,
``input_audio`` and ``file`` (user messages), ``refusal`` (assistant messages).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .errors import InvalidRequestError

__all__ = [
    "format_prompt",
    "get_last_user_message",
    "filter_none",
    "validate_messages",
    "message_features",
    "text_content",
    "require_text_only",
    "ROLES",
    "FEATURE_PARTS",
]

ROLES = ("system", "developer", "user", "assistant", "tool")
_ROLES = frozenset(ROLES)

#: part types each role may send
_PARTS: dict[str, frozenset[str]] = {
    "user": frozenset({"text", "image_url", "input_audio", "file"}),
    "assistant": frozenset({"text", "refusal"}),
    "system": frozenset({"text"}),
    "developer": frozenset({"text"}),
    "tool": frozenset({"text"}),
}
#: content part type -> the capability a provider needs to take it
FEATURE_PARTS = {"image_url": "images", "input_audio": "audio", "file": "files"}
_IMAGE_DETAIL = frozenset({"auto", "low", "high"})
_AUDIO_FORMATS = frozenset({"wav", "mp3"})


def _fail(message: str, param: str) -> InvalidRequestError:
    return InvalidRequestError(f"{param} {message}", param=param)


def _check_part(part: Any, role: str, where: str) -> None:
    if not isinstance(part, Mapping):
        raise _fail(f"must be a content part object, not {type(part).__name__}", where)
    kind = part.get("type")
    allowed = _PARTS[role]
    if kind not in allowed:
        known = kind in _PARTS["user"] or kind == "refusal"
        what = f"not allowed in {role} messages" if known else "not a content part type"
        raise _fail(
            f"{kind!r} is {what} ({role} messages take: {', '.join(sorted(allowed))})",
            f"{where}.type",
        )
    if kind in ("text", "refusal"):
        if not isinstance(part.get(kind), str):
            raise _fail("must be a string", f"{where}.{kind}")
    elif kind == "image_url":
        image = part.get("image_url")
        if not isinstance(image, Mapping):
            image = {}  # no url, refused below
        url = image.get("url")
        if not isinstance(url, str) or not url.startswith(("https://", "http://", "data:")):
            raise _fail("must be an http(s) URL or a data: URI", f"{where}.image_url.url")
        detail = image.get("detail")
        if detail is not None and detail not in _IMAGE_DETAIL:
            raise _fail(
                f"must be one of auto, low, high, not {detail!r}", f"{where}.image_url.detail"
            )
    elif kind == "input_audio":
        audio = part.get("input_audio")
        if not (
            isinstance(audio, Mapping)
            and isinstance(audio.get("data"), str)
            and audio.get("format") in _AUDIO_FORMATS
        ):
            raise _fail("needs base64 'data' and a 'format' of wav or mp3", f"{where}.input_audio")
    elif kind == "file":
        file = part.get("file")
        if not (
            isinstance(file, Mapping)
            and any(isinstance(file.get(k), str) for k in ("file_data", "file_id"))
        ):
            raise _fail("needs 'file_data' (a data: URI or base64) or 'file_id'", f"{where}.file")


def _check_tool_calls(calls: Any, where: str) -> None:
    if not isinstance(calls, Sequence) or isinstance(calls, (str, bytes)) or not calls:
        raise _fail("must be a non-empty list", where)
    for j, call in enumerate(calls):
        at = f"{where}[{j}]"
        function = call.get("function") if isinstance(call, Mapping) else None
        if not (
            isinstance(call, Mapping)
            and isinstance(call.get("id"), str)
            and call.get("type", "function") == "function"
            and isinstance(function, Mapping)
            and isinstance(function.get("name"), str)
            and isinstance(function.get("arguments"), str)
        ):
            raise _fail(
                "must be {'id', 'type': 'function', 'function': {'name', "
                "'arguments': '<JSON string>'}}",
                at,
            )


def validate_messages(messages: Any) -> list[Mapping[str, Any]]:
    """Check ``messages`` and return it as a list (a plain string is one user message).

    Raises :class:`InvalidRequestError` naming the first bad item (``.param`` in OpenAI's
    notation, ``messages[1].content[0].image_url.url``), rather than letting a malformed
    message fail deep inside a provider.
    """
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    # (type(...) is list/dict first: isinstance of an ABC is a Python call, and this runs
    # twice per request)
    if type(messages) is not list and (
        not isinstance(messages, Sequence) or isinstance(messages, (bytes, bytearray))
    ):
        raise InvalidRequestError(
            "messages must be a list of {'role', 'content'} dicts,"
            f" not {type(messages).__name__}",
            param="messages",
        )
    if not messages:
        raise InvalidRequestError("messages is empty", param="messages")
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if type(message) is not dict and not isinstance(message, Mapping):
            raise _fail(f"must be a dict, not {type(message).__name__}", where)
        role = message.get("role")
        if role not in _ROLES:
            raise _fail(f"must be one of {', '.join(ROLES)}, not {role!r}", f"{where}.role")
        content = message.get("content")
        if type(content) is str:  # the common case first: this runs for every message
            pass
        elif isinstance(content, Sequence) and not isinstance(content, (str, bytes)):
            for j, part in enumerate(content):
                _check_part(part, role, f"{where}.content[{j}]")
        elif (
            content is None
            and role == "assistant"
            and (message.get("tool_calls") or message.get("refusal"))
        ):
            pass
        else:
            what = "a string or a list of content parts"
            if role == "assistant":
                what += " (or None with tool_calls)"
            raise _fail(f"must be {what}, not {type(content).__name__}", f"{where}.content")
        if len(message) > 2:  # optional keys, checked only when there are any
            name = message.get("name")
            if name is not None and not isinstance(name, str):
                raise _fail("must be a string", f"{where}.name")
            if message.get("tool_calls") is not None:
                if role != "assistant":
                    raise _fail("is only allowed in assistant messages", f"{where}.tool_calls")
                _check_tool_calls(message["tool_calls"], f"{where}.tool_calls")
        if role == "tool" and not isinstance(message.get("tool_call_id"), str):
            raise _fail(
                "is required in tool messages: the id of the call it answers",
                f"{where}.tool_call_id",
            )
    return list(messages)


def message_features(messages: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """What the messages need of a provider beyond plain text: capability -> the first
    ``param`` needing it (``{"images": "messages[0].content[1]"}``). Capabilities:
    ``images``, ``audio``, ``files`` (content parts) and ``tools`` (tool calls and results).
    The messages must be valid (:func:`validate_messages`)."""
    found: dict[str, str] = {}
    for i, message in enumerate(messages):
        content = message.get("content")
        if type(content) is not str and content:
            for j, part in enumerate(content):
                feature = FEATURE_PARTS.get(part.get("type"))
                if feature is not None:
                    found.setdefault(feature, f"messages[{i}].content[{j}]")
        if len(message) > 2:
            if message.get("tool_calls"):
                found.setdefault("tools", f"messages[{i}].tool_calls")
            elif message.get("role") == "tool":
                found.setdefault("tools", f"messages[{i}]")
        elif message.get("role") == "tool":
            found.setdefault("tools", f"messages[{i}]")
    return found


def text_content(message: Mapping[str, Any], index: int = 0, provider: str | None = None) -> str:
    """The text of one message for a text-only service: a string as it is, text parts
    joined. Anything a text-only service cannot take (images, audio, files, tool calls,
    tool results) is an :class:`InvalidRequestError` naming it, never silently dropped."""
    content = message.get("content")
    where = f"messages[{index}]"
    if message.get("role") == "tool" or message.get("tool_calls"):
        raise InvalidRequestError(
            f"{where}: tool calls and tool results need a provider with tool support",
            param=f"{where}.tool_calls" if message.get("tool_calls") else where,
            provider=provider,
        )
    if type(content) is str:
        return content
    texts = []
    for j, part in enumerate(content or ()):
        kind = part.get("type")
        if kind == "text":
            texts.append(part["text"])
        else:
            feature = FEATURE_PARTS.get(kind, kind)
            raise InvalidRequestError(
                f"{where}.content[{j}]: this provider takes text only ({kind} parts need a "
                f"provider with {feature} support)",
                param=f"{where}.content[{j}]",
                provider=provider,
            )
    return "".join(texts)


def require_text_only(messages: Any, provider: str | None = None) -> list[dict[str, str]]:
    """``messages`` validated and reduced to ``{"role", "content": str}`` (plus ``name``)
    for a text-only service; see :func:`text_content` for what is refused."""
    out = []
    for i, message in enumerate(validate_messages(messages)):
        item = {"role": message["role"], "content": text_content(message, i, provider)}
        if message.get("name") is not None:
            item["name"] = message["name"]
        out.append(item)
    return out


def format_prompt(
    messages: Sequence[Mapping[str, Any]] | str, add_special_tokens: bool = False
) -> str:
    """Render messages as one prompt.

    One message (and ``add_special_tokens`` false) gives its content unchanged; several give
    ``"User: ...\\nAssistant: ...\\nUser: ...\\nAssistant:"``, ending with the cue for the
    assistant's next turn. Content parts other than text are refused (:func:`text_content`).
    """
    messages = require_text_only(messages)
    if len(messages) == 1 and not add_special_tokens:
        return messages[0]["content"]
    lines = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
    return "\n".join(lines) + "\nAssistant:"


def get_last_user_message(messages: Sequence[Mapping[str, Any]] | str) -> str:
    """The content of the last user message (the new turn of a continued conversation)."""
    messages = require_text_only(messages)
    for message in reversed(messages):
        if message["role"] == "user":
            return message["content"]
    raise InvalidRequestError("messages has no user message", param="messages")


def filter_none(**kwargs: Any) -> dict[str, Any]:
    """The keyword arguments whose value is not ``None``, as a new dict."""
    return {key: value for key, value in kwargs.items() if value is not None}
