"""Incremental newline-delimited JSON (JSON Lines) decoder.

``NDJSONDecoder.feed(bytes)`` accepts any split of the byte stream and returns the JSON
values of the lines it completes. ``\\r\\n`` line ends and blank lines are tolerated. A line
that is not JSON raises :class:`MalformedLineError` (a ``ValueError``) carrying the line; a
line longer than the decoder's ``max_line_bytes`` raises :class:`LineTooLongError`, a
``MalformedLineError`` too (the HTTP session turns both into a ``ResponseError``).
"""

from __future__ import annotations

import json
from typing import Any

from .sse import MAX_LINE_BYTES, _head, _scan, _too_long

__all__ = ["NDJSONDecoder", "MalformedLineError", "LineTooLongError", "MAX_LINE_BYTES"]


class MalformedLineError(ValueError):
    """A complete line of the stream is not valid JSON. ``.line`` holds it (bytes)."""

    def __init__(self, line: bytes) -> None:
        self.line = line
        shown = line[:200].decode("utf-8", "replace")
        super().__init__(f"malformed JSON line in stream: {shown!r}")


class LineTooLongError(MalformedLineError):
    """A line of an SSE or NDJSON stream (or the data of one SSE event) is longer than the
    decoder's ``max_line_bytes``. ``.line`` holds only its first 200 bytes; ``.size`` the
    bytes seen (at least ``limit + 1``: the decoder stops reading the line there),
    ``.limit`` the bound.

    A subclass of :class:`MalformedLineError` so that whoever maps that one (the HTTP
    session: to :class:`~llmplex.errors.ResponseError`) maps this one too."""

    def __init__(self, line: bytes, size: int, limit: int, what: str = "line") -> None:
        ValueError.__init__(
            self,
            f"{what} in stream longer than {limit} bytes ({size} bytes so far; "
            f"starts {line[:60].decode('utf-8', 'replace')!r})",
        )
        self.line = line[:200]
        self.size = size
        self.limit = limit


class NDJSONDecoder:
    """Turns a byte stream of JSON lines into Python values, incrementally.

    Linear in the input for any split (an unfinished line is kept as a list of pieces and
    joined once, when its newline arrives). ``max_line_bytes`` (default
    :data:`MAX_LINE_BYTES`, 16 MiB) bounds one line, its ``\\n`` not counted: a longer one
    raises :class:`LineTooLongError` from :meth:`feed` (as soon as it is held), and values
    completed earlier in the same read are not returned then."""

    __slots__ = ("_buffer", "_parts", "_size", "max_line_bytes")

    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        if max_line_bytes < 1:
            raise ValueError(f"max_line_bytes must be positive, not {max_line_bytes!r}")
        self.max_line_bytes = max_line_bytes
        self._buffer = b""  # the first piece of the unfinished line, if any
        self._parts: list[bytes] = []  # its further pieces (none of them has a newline)
        self._size = 0  # bytes in _buffer and _parts, once _parts is used

    def feed(self, chunk: bytes) -> list[Any]:
        """Add bytes; return the values of the lines they complete (possibly none)."""
        if self._buffer:
            if b"\n" not in chunk:
                self._hold(chunk)
                return []
            if self._parts:
                self._parts.append(chunk)
                buffer = self._buffer + b"".join(self._parts)
                self._parts = []
            else:
                buffer = self._buffer + chunk
        else:
            buffer = chunk
        lines = buffer.split(b"\n")
        self._buffer = lines.pop()
        if len(buffer) > self.max_line_bytes:
            self._check_lines(lines)
        return self._parse(lines) if lines else []

    def close(self) -> list[Any]:
        """End of stream: a last line without a newline is still a line."""
        rest = self._buffer + b"".join(self._parts) if self._parts else self._buffer
        self._buffer, self._parts = b"", []
        return self._parse([rest])

    def _hold(self, chunk: bytes) -> None:
        """Keep ``chunk`` as a further piece of the unfinished line, within the limit."""
        if not chunk:
            return
        if not self._parts:
            self._size = len(self._buffer)
        self._parts.append(chunk)
        self._size += len(chunk)
        if self._size > self.max_line_bytes:
            size, head = self._size, _head(self._buffer, self._parts)
            self._buffer, self._parts = b"", []
            _too_long(head, size, self.max_line_bytes, "line")

    def _check_lines(self, lines: list[bytes]) -> None:
        """After a read longer than the limit: fail if one of its lines is."""
        limit = self.max_line_bytes
        for line in (*lines, self._buffer):
            if len(line) > limit:
                self._buffer, self._parts = b"", []
                _too_long(line[:200], len(line), limit, "line")

    @staticmethod
    def _parse(lines: list[bytes]) -> list[Any]:
        values: list[Any] = []
        for line in lines:
            if not line:
                continue
            # json.loads(line), the same value or the same error: a line that is UTF-8 and
            # exactly one JSON value is parsed by the C scanner directly (see .sse.loads);
            # on anything else json.loads decides (other encodings, a BOM, whitespace,
            # errors). Inline: this runs once per line.
            try:
                text = line.decode()
                value, end = _scan(text, 0)
                if end == len(text):
                    values.append(value)
                    continue
            except (StopIteration, ValueError):  # UnicodeDecodeError is a ValueError
                pass
            if line.isspace():
                continue
            try:
                values.append(json.loads(line))
            except ValueError:  # JSONDecodeError and UnicodeDecodeError
                raise MalformedLineError(line) from None
        return values
