"""Messages, and the chunks and conversation state that providers yield besides text.

A provider's stream yields ``str`` text deltas and, mixed in, typed events
(:mod:`llmplex.events`, re-exported here) and :class:`JsonConversation` state. Each typed
chunk stringifies to ``""``, so ``"".join(map(str, chunks))`` is the answer text.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Iterator
from typing import Any, Literal, TypedDict

from .events import (
    ChoiceText,
    Event,
    FinishReason,
    Logprobs,
    ReasoningDelta,
    ReasoningSignature,
    RefusalDelta,
    ResponseMeta,
    ToolCallDelta,
    Usage,
)

__all__ = [
    "Message",
    "Messages",
    "Chunk",
    "Event",
    "FinishReason",
    "Usage",
    "ReasoningDelta",
    "ReasoningSignature",
    "RefusalDelta",
    "ToolCallDelta",
    "ChoiceText",
    "Logprobs",
    "ResponseMeta",
    "JsonConversation",
    "AsyncResult",
    "CreateResult",
]


class Message(TypedDict, total=False):
    """One chat message in OpenAI's shape.

    ``content`` is a string or a list of parts (``{"type": "text", "text"}``,
    ``{"type": "image_url", "image_url": {"url"}}``, ``{"type": "input_audio",
    "input_audio": {"data", "format"}}``, ``{"type": "file", "file": {...}}``); an assistant
    message with ``tool_calls`` may have ``content`` None; a ``tool`` message answers the
    call ``tool_call_id``.
    """

    role: Literal["system", "developer", "user", "assistant", "tool"] | str
    content: str | list[dict[str, Any]] | None
    name: str
    tool_calls: list[dict[str, Any]]
    tool_call_id: str


Messages = list[Message]


class JsonConversation(Event):
    """Provider-specific continuation state, a bag of JSON-serialisable attributes.

    Providers subclass it (Ai2's ``Conversation`` holds ``model``, ``messages``, ``parent``
    and ``x_anonymous_user_id``). ``get_dict()`` gives a JSON-ready copy of the state and
    ``from_dict()`` rebuilds it, which is how conversation stores persist it.
    """

    def __init__(self, **kwargs: Any) -> None:
        self.__dict__.update(kwargs)

    def get_dict(self) -> dict[str, Any]:
        """A deep copy of the state: mutating it does not touch the conversation."""
        return copy.deepcopy({k: v for k, v in self.__dict__.items() if not k.startswith("_")})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JsonConversation:
        obj = cls.__new__(cls)
        obj.__dict__.update(copy.deepcopy(data))
        return obj

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.get_dict().items() if k != "messages")
        n = len(getattr(self, "messages", ()) or ())
        return f"{type(self).__name__}({fields}, messages=<{n}>)"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.get_dict() == self.get_dict()

    # unhashable, as __eq__ compares values; the ignore: typeshed declares
    # object.__hash__ a method, so mypy refuses the None Python documents
    __hash__ = None  # type: ignore[assignment]


Chunk = str | Event
AsyncResult = AsyncIterator[Chunk]
CreateResult = Iterator[Chunk]
