"""The default conversation store: one SQLite file, shared safely between processes.

Location: ``$LLMPLEX_DATA_DIR/conversations.sqlite3`` if that variable is set, else
``conversations.sqlite3`` in the user's data directory (``platformdirs.user_data_dir
("llmplex")``: ``~/.local/share/llmplex`` on Linux). Pass ``path=`` to choose another file.

Messages are rows appended in write transactions (``BEGIN IMMEDIATE``, WAL journal, a busy
timeout), so two processes adding turns to one conversation both keep their turns: no
read-modify-write of a whole history, and no lost update.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .base import Conversation, ConversationNotFoundError, ConversationStore

__all__ = ["SQLiteStore", "default_path"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY,
    model TEXT,
    provider TEXT,
    metadata TEXT NOT NULL DEFAULT '{}',
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_conversation ON messages(conversation_id, seq);
CREATE TABLE IF NOT EXISTS provider_state (
    conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    provider TEXT NOT NULL,
    state TEXT NOT NULL,
    turns INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, provider)
);
"""


def default_path() -> Path:
    """Where the default store lives (see the module docstring)."""
    base = os.environ.get("LLMPLEX_DATA_DIR")
    if not base:
        import platformdirs

        base = platformdirs.user_data_dir("llmplex")
    return Path(base) / "conversations.sqlite3"


class SQLiteStore(ConversationStore):
    """Conversations in a SQLite file; safe across threads and processes."""

    def __init__(self, path: str | os.PathLike[str] | None = None, *, timeout: float = 30.0):
        self.path = Path(path) if path is not None else default_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            self.path, timeout=timeout, isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        with self._write() as db:
            # executescript() would commit on its own; run the statements one by one.
            for statement in filter(str.strip, _SCHEMA.split(";")):
                db.execute(statement)

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r})"

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken up front so concurrent writers queue, not fail."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            else:
                self._db.execute("COMMIT")

    def create(
        self,
        *,
        model: str | None = None,
        messages: Sequence[Mapping[str, Any]] = (),
        metadata: dict[str, Any] | None = None,
        id: str | None = None,
    ) -> Conversation:
        conversation = Conversation.new(model=model, messages=messages, metadata=metadata, id=id)
        with self._write() as db:
            db.execute(
                "INSERT INTO conversations (id, model, provider, metadata, created, updated)"
                " VALUES (?, ?, NULL, ?, ?, ?)",
                (
                    conversation.id,
                    model,
                    json.dumps(conversation.metadata),
                    conversation.created,
                    conversation.updated,
                ),
            )
            db.executemany(
                "INSERT INTO messages (conversation_id, message) VALUES (?, ?)",
                [(conversation.id, json.dumps(m)) for m in conversation.messages],
            )
        return conversation

    def get(self, conversation_id: str) -> Conversation:
        with self._lock:
            return self._load(conversation_id)

    def _load(self, conversation_id: str) -> Conversation:
        row = self._db.execute(
            "SELECT id, model, provider, metadata, created, updated FROM conversations"
            " WHERE id = ?",
            (conversation_id,),
        ).fetchone()
        if row is None:
            raise ConversationNotFoundError(f"conversation {conversation_id!r} not found")
        messages = [
            json.loads(m)
            for (m,) in self._db.execute(
                "SELECT message FROM messages WHERE conversation_id = ? ORDER BY seq",
                (conversation_id,),
            )
        ]
        states = {
            provider: {"state": json.loads(state), "turns": turns}
            for provider, state, turns in self._db.execute(
                "SELECT provider, state, turns FROM provider_state WHERE conversation_id = ?",
                (conversation_id,),
            )
        }
        return Conversation(
            id=row[0],
            model=row[1],
            provider=row[2],
            messages=messages,
            provider_state=states,
            metadata=json.loads(row[3]),
            created=row[4],
            updated=row[5],
        )

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
        with self._write() as db:
            exists = db.execute(
                "SELECT 1 FROM conversations WHERE id = ?", (conversation_id,)
            ).fetchone()
            if exists is None:
                raise ConversationNotFoundError(f"conversation {conversation_id!r} not found")
            (turns,) = db.execute(
                "SELECT COUNT(*) FROM messages WHERE conversation_id = ?", (conversation_id,)
            ).fetchone()
            db.executemany(
                "INSERT INTO messages (conversation_id, message) VALUES (?, ?)",
                [(conversation_id, json.dumps(dict(m))) for m in messages],
            )
            if (
                provider
                and state is not None
                and (expected_turns is None or turns == expected_turns)
            ):
                db.execute(
                    "INSERT OR REPLACE INTO provider_state"
                    " (conversation_id, provider, state, turns) VALUES (?, ?, ?, ?)",
                    (conversation_id, provider, json.dumps(state), turns + len(messages)),
                )
            db.execute(
                "UPDATE conversations SET provider = COALESCE(?, provider),"
                " model = COALESCE(?, model), updated = ? WHERE id = ?",
                (provider, model, time.time(), conversation_id),
            )
            return self._load(conversation_id)

    def delete(self, conversation_id: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))

    def list(self, limit: int = 50) -> list[Conversation]:
        with self._lock:
            ids = [
                cid
                for (cid,) in self._db.execute(
                    "SELECT id FROM conversations ORDER BY updated DESC LIMIT ?", (limit,)
                )
            ]
            return [self._load(cid) for cid in ids]

    def close(self) -> None:
        with self._lock:
            self._db.close()
