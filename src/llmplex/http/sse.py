"""Incremental Server-Sent Events decoder (the WHATWG "event stream" format).

``SSEDecoder.feed(bytes)`` accepts any split of the byte stream — mid-line, mid-UTF-8
character, or between the ``\\r`` and ``\\n`` of a CRLF — and returns the events completed
so far. Lines end with ``\\n``, ``\\r\\n`` or ``\\r``; one space after ``field:`` is
stripped; several ``data:`` lines join with ``\\n``; ``:`` comments are ignored; events
without data are not dispatched, as the specification says.

Line splitting works on bytes: ``\\r`` and ``\\n`` never occur inside a multi-byte UTF-8
sequence, so a character split across reads is only decoded once its line is complete.
"""

from __future__ import annotations

import json
from json.scanner import make_scanner
from typing import Any

__all__ = ["ServerSentEvent", "SSEDecoder", "loads"]

# The C scanner behind json.loads, called directly: a streamed chunk is a small compact
# JSON object, and for that json.loads spends as long in its three Python-level frames and
# two whitespace regexes as in the parsing itself.
_scan = make_scanner(json.JSONDecoder())


def loads(text: str) -> Any:
    """``json.loads(text)`` for a ``str``: the same value, or the same error.

    Text that is exactly one JSON value takes the fast path; on anything else (surrounding
    whitespace, trailing data, invalid JSON) :func:`json.loads` itself decides."""
    try:
        value, end = _scan(text, 0)
    except (StopIteration, ValueError):
        return json.loads(text)
    if end != len(text):
        return json.loads(text)
    return value


class ServerSentEvent:
    """One dispatched event: ``event`` type (default ``"message"``), ``data``, ``id``, ``retry``."""

    __slots__ = ("event", "data", "id", "retry")

    def __init__(
        self, data: str = "", event: str = "message", id: str = "", retry: int | None = None
    ) -> None:
        self.event = event
        self.data = data
        self.id = id
        self.retry = retry

    def json(self) -> Any:
        """The data parsed as JSON."""
        return loads(self.data)

    def __repr__(self) -> str:
        return f"ServerSentEvent(event={self.event!r}, data={self.data!r}, id={self.id!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ServerSentEvent) and (
            (self.event, self.data, self.id, self.retry)
            == (other.event, other.data, other.id, other.retry)
        )

    __hash__ = None  # type: ignore[assignment]


class SSEDecoder:
    """Turns a byte stream into :class:`ServerSentEvent` objects, incrementally."""

    __slots__ = ("_buffer", "_event", "_data", "_last_id", "_retry", "_skip_lf")

    def __init__(self) -> None:
        self._buffer = b""
        self._event: bytes | None = None
        self._data: list[bytes] | None = None
        self._last_id = ""
        self._retry: int | None = None
        self._skip_lf = False

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """Add bytes; return the events they complete (possibly none)."""
        if not chunk:
            return []
        if self._skip_lf:
            # The last read ended with CR, already taken as a line end; a LF now is its pair.
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        buffer = self._buffer + chunk if self._buffer else chunk
        if b"\r" in buffer:
            self._skip_lf = buffer.endswith(b"\r")
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = buffer.split(b"\n")
        self._buffer = lines.pop()
        return self._process(lines) if lines else []

    def close(self) -> list[ServerSentEvent]:
        """End of stream: per the spec, an event not ended by a blank line is discarded."""
        self._buffer = b""
        self._event = None
        self._data = None
        self._skip_lf = False
        return []

    def _process(self, lines: list[bytes]) -> list[ServerSentEvent]:
        events: list[ServerSentEvent] = []
        data = self._data
        for line in lines:
            if not line:
                if data is not None:
                    event = self._event
                    events.append(
                        ServerSentEvent(
                            (data[0] if len(data) == 1 else b"\n".join(data)).decode(
                                "utf-8", "replace"),
                            event.decode("utf-8", "replace") if event else "message",
                            self._last_id,
                            self._retry,
                        )
                    )
                    data = None
                self._event = None
                continue
            # The common lines first, without the general field parsing below.
            if line[:5] == b"data:":
                value = line[5:]
                if value[:1] == b" ":
                    value = value[1:]
                if data is None:
                    data = [value]
                else:
                    data.append(value)
                continue
            if line[:6] == b"event:":
                value = line[6:]
                self._event = value[1:] if value[:1] == b" " else value
                continue
            colon = line.find(b":")
            if colon == 0:
                continue  # comment / keep-alive
            if colon < 0:
                field, value = line, b""
            else:
                field = line[:colon]
                value = line[colon + 1 :]
                if value[:1] == b" ":
                    value = value[1:]
            if field == b"data":
                if data is None:
                    data = [value]
                else:
                    data.append(value)
            elif field == b"event":
                self._event = value
            elif field == b"id":
                if b"\0" not in value:
                    self._last_id = value.decode("utf-8", "replace")
            elif field == b"retry":
                if value.isdigit():
                    self._retry = int(value)
            # other fields are ignored, as the spec says
        self._data = data
        return events
