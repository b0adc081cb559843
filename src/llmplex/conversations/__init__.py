"""Stored multi-turn conversations: the message history plus each provider's own
continuation state, kept in a store so a later process can continue by id.

Stores: :class:`SQLiteStore` (the default; a file in the user's data directory, safe with
several processes writing) and :class:`MemoryStore` (tests, short-lived programs).
"""

from __future__ import annotations

from .base import Conversation, ConversationNotFoundError, ConversationStore
from .memory import MemoryStore
from .sqlite import SQLiteStore, default_path

__all__ = [
    "Conversation",
    "ConversationStore",
    "ConversationNotFoundError",
    "MemoryStore",
    "SQLiteStore",
    "default_path",
]
