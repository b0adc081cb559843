"""Chunks and conversation state that providers yield besides text.

A provider's stream yields ``str`` text deltas and, mixed in, the typed chunks defined here.
Each typed chunk stringifies to ``""``, so ``"".join(map(str, chunks))`` is the answer text.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Iterator
from typing import Any, Literal, TypedDict, Union

__all__ = [
    "Message",
    "Messages",
    "Chunk",
    "FinishReason",
    "Usage",
    "JsonConversation",
    "AsyncResult",
    "CreateResult",
]


class Message(TypedDict):
    """One chat message: ``{"role": "user" | "assistant" | "system", "content": "..."}``."""

    role: Literal["system", "user", "assistant"] | str
    content: str


Messages = list[Message]


class _TypedChunk:
    """Base of non-text chunks: invisible when a stream is joined into text."""

    __slots__ = ()

    def __str__(self) -> str:
        return ""


class FinishReason(_TypedChunk):
    """Why the answer ended: ``"stop"``, ``"length"``, ``"canceled"``, ..."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"FinishReason({self.reason!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FinishReason) and other.reason == self.reason

    def __hash__(self) -> int:
        return hash(("FinishReason", self.reason))


class Usage(_TypedChunk):
    """Token counts reported by the service (or estimated, where it reports none)."""

    __slots__ = ("prompt_tokens", "completion_tokens", "total_tokens")

    def __init__(
        self, prompt_tokens: int = 0, completion_tokens: int = 0, total_tokens: int | None = None
    ) -> None:
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.total_tokens = (
            prompt_tokens + completion_tokens if total_tokens is None else total_tokens
        )

    def get_dict(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }

    def __repr__(self) -> str:
        return "Usage({})".format(", ".join(f"{k}={v}" for k, v in self.get_dict().items()))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Usage) and other.get_dict() == self.get_dict()

    __hash__ = None  # type: ignore[assignment]


class JsonConversation(_TypedChunk):
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

    __hash__ = None  # type: ignore[assignment]


Chunk = Union[str, FinishReason, Usage, JsonConversation]
AsyncResult = AsyncIterator[Chunk]
CreateResult = Iterator[Chunk]
