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
from typing import Any, NoReturn

__all__ = ["ServerSentEvent", "SSEDecoder", "loads", "MAX_LINE_BYTES"]

#: Default bound on one line of an event stream (SSE or NDJSON), its line end not counted,
#: and on the data of one SSE event: a longer one fails the stream (``LineTooLongError``).
MAX_LINE_BYTES = 16 * 1024 * 1024

# The C scanner behind json.loads, called directly: a streamed chunk is a small compact
# JSON object, and for that json.loads spends as long in its three Python-level frames and
# two whitespace regexes as in the parsing itself.
# (typeshed types make_scanner's argument as the Python scanner class; C takes a decoder)
_scan = make_scanner(json.JSONDecoder())  # type: ignore[arg-type]


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
    """Turns a byte stream into :class:`ServerSentEvent` objects, incrementally.

    Linear in the input for any split: the bytes of an unfinished line are kept as a list
    of pieces, and a new piece is searched for a line end on its own, so a long line that
    arrives in many reads is joined once, when it ends.

    ``max_line_bytes`` (default :data:`MAX_LINE_BYTES`, 16 MiB) bounds one line (its line
    end not counted) and the data of one event (its ``data:`` lines joined): beyond it
    :meth:`feed` raises :class:`~llmplex.http.ndjson.LineTooLongError`, a
    :class:`~llmplex.http.ndjson.MalformedLineError` (so a ``ValueError``), which the HTTP
    session translates into a :class:`~llmplex.errors.ResponseError`, as it does for a
    malformed JSON line. The decoder holds no more than about ``max_line_bytes`` plus one
    read. Events completed earlier in the same read are not returned then: the stream is
    broken, and its error is what the caller gets.
    """

    __slots__ = (
        "_buffer",
        "_parts",
        "_size",
        "_event",
        "_data",
        "_data_size",
        "_last_id",
        "_retry",
        "_skip_lf",
        "max_line_bytes",
    )

    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        if max_line_bytes < 1:
            raise ValueError(f"max_line_bytes must be positive, not {max_line_bytes!r}")
        self.max_line_bytes = max_line_bytes
        self._buffer = b""  # the first piece of the unfinished line, if any
        self._parts: list[bytes] = []  # its further pieces (none of them has a line end)
        self._size = 0  # bytes in _buffer and _parts, once _parts is used
        self._event: bytes | None = None
        self._data: list[bytes] | None = None
        self._data_size = 0  # bytes of the joined data, once an event has two data lines
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
        if self._buffer:
            if b"\n" not in chunk and b"\r" not in chunk:
                self._hold(chunk)  # the line goes on: keep the piece, join nothing yet
                return []
            if self._parts:
                self._parts.append(chunk)
                buffer = self._buffer + b"".join(self._parts)
                self._parts = []
            else:
                buffer = self._buffer + chunk
        else:
            buffer = chunk
        if b"\r" in buffer:
            self._skip_lf = buffer.endswith(b"\r")
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = buffer.split(b"\n")
        self._buffer = lines.pop()
        if len(buffer) > self.max_line_bytes:
            self._check_lines(lines)
        return self._process(lines) if lines else []

    def _hold(self, chunk: bytes) -> None:
        """Keep ``chunk`` as a further piece of the unfinished line, within the limit."""
        if not self._parts:
            self._size = len(self._buffer)
        self._parts.append(chunk)
        self._size += len(chunk)
        if self._size > self.max_line_bytes:
            size, head = self._size, _head(self._buffer, self._parts)
            self.close()
            _too_long(head, size, self.max_line_bytes, "line")

    def _check_lines(self, lines: list[bytes]) -> None:
        """After a read longer than the limit: fail if one of its lines is."""
        limit = self.max_line_bytes
        for line in (*lines, self._buffer):
            if len(line) > limit:
                self.close()
                _too_long(line[:200], len(line), limit, "line")

    def close(self) -> list[ServerSentEvent]:
        """End of stream: per the spec, an event not ended by a blank line is discarded."""
        self._buffer = b""
        self._parts = []
        self._event = None
        self._data = None
        self._skip_lf = False
        return []

    def _process(self, lines: list[bytes]) -> list[ServerSentEvent]:
        events: list[ServerSentEvent] = []
        data = self._data
        # Each line is within the limit; the data of an event of several lines is counted
        # here, from its second line on (a one-line event costs nothing).
        for line in lines:
            if not line:
                if data is not None:
                    event = self._event
                    events.append(
                        ServerSentEvent(
                            (data[0] if len(data) == 1 else b"\n".join(data)).decode(
                                "utf-8", "replace"
                            ),
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
                # (one slice, not two: a one-byte bytes object is a cached singleton)
                value = line[6:] if line[5:6] == b" " else line[5:]
                if data is None:
                    data = [value]
                else:
                    data.append(value)
                    self._count_data(data, value)
                continue
            if line[:6] == b"event:":
                self._event = line[7:] if line[6:7] == b" " else line[6:]
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
                    self._count_data(data, value)
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

    def _count_data(self, data: list[bytes], value: bytes) -> None:
        """A further data line ``value`` was added to ``data``: keep the joined size in
        bounds."""
        if len(data) == 2:
            self._data_size = len(data[0])
        self._data_size += 1 + len(value)
        if self._data_size > self.max_line_bytes:
            size = self._data_size
            self.close()
            _too_long(data[0][:200], size, self.max_line_bytes, "event data")


def _head(first: bytes, parts: list[bytes]) -> bytes:
    """The first 200 bytes of a line held as ``first`` and further ``parts``."""
    head = [first]
    size = len(first)
    for part in parts:
        if size >= 200:
            break
        head.append(part)
        size += len(part)
    return b"".join(head)[:200]


def _too_long(head: bytes, size: int, limit: int, what: str) -> NoReturn:
    from .ndjson import LineTooLongError  # here: ndjson imports this module

    raise LineTooLongError(head, size, limit, what)
