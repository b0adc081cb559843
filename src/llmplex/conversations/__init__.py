"""Stored multi-turn conversations: the message history plus each provider's own
continuation state, kept in a store so a later process can continue by id.

Stores: :class:`SQLiteStore` (the default; a file in the user's data directory, safe with
several processes writing), :class:`MemoryStore` (tests, short-lived programs) and
:class:`RedisStore` (shared by servers on several machines; the ``redis`` extra).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import Conversation, ConversationNotFoundError, ConversationStore
from .memory import MemoryStore

if TYPE_CHECKING:  # pragma: no cover
    from .redis import RedisStore
    from .sqlite import SQLiteStore, default_path

__all__ = [
    "Conversation",
    "ConversationStore",
    "ConversationNotFoundError",
    "MemoryStore",
    "RedisStore",
    "SQLiteStore",
    "default_path",
]


def __getattr__(name: str) -> Any:
    # sqlite3 is loaded when the SQLite store is first used, not by every client import.
    if name in ("SQLiteStore", "default_path"):
        from . import sqlite

        return getattr(sqlite, name)
    if name == "RedisStore":  # the redis client library only when asked for
        from .redis import RedisStore

        return RedisStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
