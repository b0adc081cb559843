"""Prompt helpers shared by providers. None of them mutates its arguments."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .errors import InvalidRequestError

__all__ = ["format_prompt", "get_last_user_message", "filter_none", "validate_messages"]

_ROLES = frozenset({"system", "user", "assistant", "developer", "tool"})


def validate_messages(messages: Any) -> list[Mapping[str, Any]]:
    """Check ``messages`` and return it as a list (a plain string is one user message).

    Raises :class:`InvalidRequestError` naming the first bad item, rather than letting a
    malformed message fail deep inside a provider.
    """
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    if not isinstance(messages, Sequence) or isinstance(messages, (bytes, bytearray)):
        raise InvalidRequestError(
            f"messages must be a list of {{'role', 'content'}} dicts, not {type(messages).__name__}"
        )
    if not messages:
        raise InvalidRequestError("messages is empty")
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise InvalidRequestError(
                f"messages[{i}] must be a dict, not {type(message).__name__}"
            )
        role = message.get("role")
        if role not in _ROLES:
            raise InvalidRequestError(
                f"messages[{i}].role must be one of {sorted(_ROLES)}, not {role!r}"
            )
        if not isinstance(message.get("content"), str):
            raise InvalidRequestError(
                f"messages[{i}].content must be a string, "
                f"not {type(message.get('content')).__name__}"
            )
    return list(messages)


def format_prompt(messages: Sequence[Mapping[str, Any]] | str, add_special_tokens: bool = False) -> str:
    """Render messages as one prompt.

    One message (and ``add_special_tokens`` false) gives its content unchanged; several give
    ``"User: ...\\nAssistant: ...\\nUser: ...\\nAssistant:"``, ending with the cue for the
    assistant's next turn.
    """
    messages = validate_messages(messages)
    if len(messages) == 1 and not add_special_tokens:
        return messages[0]["content"]
    lines = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
    return "\n".join(lines) + "\nAssistant:"


def get_last_user_message(messages: Sequence[Mapping[str, Any]] | str) -> str:
    """The content of the last user message (the new turn of a continued conversation)."""
    messages = validate_messages(messages)
    for message in reversed(messages):
        if message["role"] == "user":
            return message["content"]
    raise InvalidRequestError("messages has no user message")


def filter_none(**kwargs: Any) -> dict[str, Any]:
    """The keyword arguments whose value is not ``None``, as a new dict."""
    return {key: value for key, value in kwargs.items() if value is not None}
