"""What an emulator answers: the reply text, its chunking and pacing, and faults.

A :class:`Script` describes one answer. Emulators take a default script and an optional
queue of one-shot scripts (``emulator.push(script)``) consumed by the next requests, so a
test can make the first call fail and the second succeed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["DEFAULT_TEXT", "Fault", "Script", "split_tokens"]

FaultKind = Literal["status", "error_event", "disconnect", "malformed", "stall", "refuse"]

_TOKEN = re.compile(r"\s*\S+|\s+")


def split_tokens(text: str) -> list[str]:
    """Split text roughly the way a tokenizer streams it: words with their leading space."""
    return _TOKEN.findall(text) or ([text] if text else [])


@dataclass(frozen=True)
class Fault:
    """A failure to inject. Build one with the class methods.

    ``after`` counts the text chunks sent before the fault (for stream faults).
    """

    kind: FaultKind
    after: int = 0
    status: int = 500
    message: str = ""
    reason: str = ""
    seconds: float = 0.0
    retry_after: float | None = None
    step: str = ""  # emulator-specific: which request of a multi-step flow fails

    @classmethod
    def http_status(
        cls, status: int, message: str = "", *, retry_after: float | None = None, step: str = ""
    ) -> Fault:
        """Answer the request with an HTTP error, using the service's real error body."""
        return cls("status", status=status, message=message, retry_after=retry_after, step=step)

    @classmethod
    def error_event(
        cls, message: str = "model overloaded", *, after: int = 0, reason: str = ""
    ) -> Fault:
        """Send the service's in-stream error after ``after`` chunks."""
        return cls("error_event", after=after, message=message, reason=reason)

    @classmethod
    def disconnect(cls, *, after: int = 0) -> Fault:
        """Cut the connection after ``after`` chunks, without ending the stream."""
        return cls("disconnect", after=after)

    @classmethod
    def malformed(cls, *, after: int = 0) -> Fault:
        """Send a line the protocol cannot parse after ``after`` chunks."""
        return cls("malformed", after=after)

    @classmethod
    def stall(cls, seconds: float = 3600.0, *, after: int = 0) -> Fault:
        """Stop sending (connection open) for ``seconds`` after ``after`` chunks."""
        return cls("stall", after=after, seconds=seconds)


class _DefaultText(str):
    """The reply a :class:`Script` has when the test scripted none (a ``str`` equal to
    :data:`DEFAULT_TEXT`): emulators may answer something else in its place, e.g. the
    OpenAI emulator a tool call alone or a JSON document for ``response_format``."""

    __slots__ = ()


#: the reply of a script whose text was not set
DEFAULT_TEXT = _DefaultText("Hello! How can I help you today?")


@dataclass
class Script:
    """One scripted answer.

    ``chunks`` fixes the exact chunking; otherwise ``text`` is split into word-like tokens.
    ``delay`` is the pause before each chunk, in seconds. ``finish_reason`` is what the
    service reports at the end (``"stop"``, ``"length"``...).

    The other fields are for emulators of services that answer more than text (each
    emulator documents what it does with them; others ignore them):

    - ``tool_calls``: calls the answer makes, each ``{"name": str, "arguments": str |
      dict, "id": str (optional)}``; a dict is sent as compact JSON.
    - ``reasoning``: reasoning text, streamed before the answer.
    - ``refusal``: a refusal sent instead of the answer text.
    - ``alternatives``: the texts of the extra choices of an ``n > 1`` request (choice 1,
      2, ...); a choice without one repeats the main text.
    - ``cached_tokens``: prompt tokens the service reports as read from its cache.

    :attr:`text_scripted` tells whether the test set the text (``text`` or ``chunks``).
    """

    text: str = DEFAULT_TEXT
    chunks: Sequence[str] | None = None
    delay: float = 0.0
    fault: Fault | None = None
    finish_reason: str = "stop"
    extra: dict[str, Any] = field(default_factory=dict)
    tool_calls: Sequence[dict[str, Any]] | None = None
    reasoning: str | None = None
    refusal: str | None = None
    alternatives: Sequence[str] | None = None
    cached_tokens: int = 0

    @property
    def text_scripted(self) -> bool:
        """True unless the reply is the default one (neither ``text`` nor ``chunks`` set)."""
        return self.chunks is not None or not isinstance(self.text, _DefaultText)

    def pieces(self) -> list[str]:
        """The chunks to send, joined they equal the reply text."""
        if self.chunks is not None:
            return list(self.chunks)
        return split_tokens(self.text)

    @property
    def reply(self) -> str:
        return "".join(self.pieces())

    def fault_at(self, kind: str, step: str = "") -> Fault | None:
        """The fault if it is of ``kind`` (and, for step faults, of ``step``)."""
        f = self.fault
        if f is None or f.kind != kind:
            return None
        if step and f.step and f.step != step:
            return None
        return f
