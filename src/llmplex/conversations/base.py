"""The conversation record and the store interface."""

from __future__ import annotations

import abc
import copy
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import LLMplexError

__all__ = ["Conversation", "ConversationStore", "ConversationNotFoundError", "new_id"]


class ConversationNotFoundError(LLMplexError, KeyError):
    """No conversation with that id in the store."""

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0] if self.args else ""


def new_id() -> str:
    return "conv_" + uuid.uuid4().hex


@dataclass
class Conversation:
    """A stored conversation.

    ``messages`` is the whole history (every provider's turns). ``provider_state`` maps a
    provider name to ``{"state": <its JsonConversation dict>, "turns": N}``: the state is
    only valid while the history still has exactly N messages — once another provider
    added turns, the full history is sent instead.
    """

    id: str = field(default_factory=new_id)
    model: str | None = None
    provider: str | None = None
    messages: list[dict[str, Any]] = field(default_factory=list)
    provider_state: dict[str, dict[str, Any]] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)

    @classmethod
    def new(
        cls,
        *,
        model: str | None = None,
        messages: Sequence[Mapping[str, Any]] = (),
        metadata: Mapping[str, Any] | None = None,
        id: str | None = None,
    ) -> Conversation:
        """A conversation as :meth:`ConversationStore.create` makes it: copies of
        ``messages`` and ``metadata``, and a new id unless ``id`` is given."""
        conversation = cls(
            model=model, messages=[dict(m) for m in messages], metadata=dict(metadata or {})
        )
        if id is not None:
            conversation.id = id
        return conversation

    def state_for(self, provider: str) -> dict[str, Any] | None:
        """The provider's continuation state if it still matches the whole history."""
        entry = self.provider_state.get(provider)
        if entry and entry.get("turns") == len(self.messages):
            return entry.get("state")
        return None

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(self.__dict__)


class ConversationStore(abc.ABC):
    """Where conversations live. Methods are synchronous and quick; async callers run
    them in a worker thread."""

    @abc.abstractmethod
    def create(
        self,
        *,
        model: str | None = None,
        messages: Sequence[Mapping[str, Any]] = (),
        metadata: dict[str, Any] | None = None,
        id: str | None = None,
    ) -> Conversation:
        """A new, saved conversation (optionally seeded with messages, e.g. a system one).

        ``id``: the id to save it under (a stored response keeps its ``resp_`` id); by
        default a new ``conv_`` one. The caller makes it unique."""

    @abc.abstractmethod
    def get(self, conversation_id: str) -> Conversation:
        """The conversation; :class:`ConversationNotFoundError` if there is none."""

    @abc.abstractmethod
    def append(
        self,
        conversation_id: str,
        messages: Sequence[dict[str, Any]],
        *,
        provider: str | None = None,
        model: str | None = None,
        state: dict[str, Any] | None = None,
        expected_turns: int | None = None,
    ) -> Conversation:
        """Add messages (never replacing any) and record the provider that answered.

        ``state`` is that provider's continuation state after the turn; it is kept only if
        the history had ``expected_turns`` messages before this append (no other writer
        slipped a turn in between), so it never claims to cover turns it has not seen.
        """

    @abc.abstractmethod
    def delete(self, conversation_id: str) -> None:
        """Remove the conversation (no error if it does not exist)."""

    @abc.abstractmethod
    def list(self, limit: int = 50) -> list[Conversation]:
        """The most recently updated conversations first."""

    def close(self) -> None:  # noqa: B027 - a no-op default, not abstract: most stores hold nothing
        """Release resources (files, connections)."""
