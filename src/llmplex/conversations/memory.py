"""An in-process conversation store (tests, notebooks, short-lived programs)."""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from .base import Conversation, ConversationNotFoundError, ConversationStore

__all__ = ["MemoryStore"]


class MemoryStore(ConversationStore):
    """Conversations in a dict; thread-safe; returns copies so callers cannot alias state."""

    def __init__(self) -> None:
        self._items: dict[str, Conversation] = {}
        self._lock = threading.Lock()

    def create(
        self,
        *,
        model: str | None = None,
        messages: Sequence[Mapping[str, Any]] = (),
        metadata: dict[str, Any] | None = None,
        id: str | None = None,
    ) -> Conversation:
        conversation = Conversation.new(model=model, messages=messages, metadata=metadata, id=id)
        with self._lock:
            self._items[conversation.id] = copy.deepcopy(conversation)
        return conversation

    def get(self, conversation_id: str) -> Conversation:
        with self._lock:
            try:
                return copy.deepcopy(self._items[conversation_id])
            except KeyError:
                raise ConversationNotFoundError(
                    f"conversation {conversation_id!r} not found"
                ) from None

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
        with self._lock:
            try:
                conversation = self._items[conversation_id]
            except KeyError:
                raise ConversationNotFoundError(
                    f"conversation {conversation_id!r} not found"
                ) from None
            in_step = expected_turns is None or len(conversation.messages) == expected_turns
            conversation.messages.extend(dict(m) for m in messages)
            if provider:
                conversation.provider = provider
                if state is not None and in_step:
                    conversation.provider_state[provider] = {
                        "state": copy.deepcopy(state),
                        "turns": len(conversation.messages),
                    }
            if model:
                conversation.model = model
            conversation.updated = time.time()
            return copy.deepcopy(conversation)

    def delete(self, conversation_id: str) -> None:
        with self._lock:
            self._items.pop(conversation_id, None)

    def list(self, limit: int = 50) -> list[Conversation]:
        with self._lock:
            items = sorted(self._items.values(), key=lambda c: c.updated, reverse=True)
            return [copy.deepcopy(c) for c in items[:limit]]
