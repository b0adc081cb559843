"""Incremental newline-delimited JSON (JSON Lines) decoder.

``NDJSONDecoder.feed(bytes)`` accepts any split of the byte stream and returns the JSON
values of the lines it completes. ``\\r\\n`` line ends and blank lines are tolerated. A line
that is not JSON raises :class:`MalformedLineError` (a ``ValueError``) carrying the line.
"""

from __future__ import annotations

import json
from typing import Any

from .sse import _scan

__all__ = ["NDJSONDecoder", "MalformedLineError"]


def _loads(line: bytes) -> Any:
    """``json.loads(line)``: the same value, or the same error. A line that is UTF-8 and
    exactly one JSON value is parsed by the C scanner directly (see :func:`.sse.loads`);
    on anything else :func:`json.loads` decides (other encodings, a BOM, whitespace,
    errors)."""
    try:
        text = line.decode()
        value, end = _scan(text, 0)
    except (StopIteration, ValueError):  # UnicodeDecodeError is a ValueError
        return json.loads(line)
    if end != len(text):
        return json.loads(line)
    return value


class MalformedLineError(ValueError):
    """A complete line of the stream is not valid JSON. ``.line`` holds it (bytes)."""

    def __init__(self, line: bytes) -> None:
        self.line = line
        shown = line[:200].decode("utf-8", "replace")
        super().__init__(f"malformed JSON line in stream: {shown!r}")


class NDJSONDecoder:
    """Turns a byte stream of JSON lines into Python values, incrementally."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[Any]:
        """Add bytes; return the values of the lines they complete (possibly none)."""
        buffer = self._buffer + chunk if self._buffer else chunk
        lines = buffer.split(b"\n")
        self._buffer = lines.pop()
        return self._parse(lines) if lines else []

    def close(self) -> list[Any]:
        """End of stream: a last line without a newline is still a line."""
        rest, self._buffer = self._buffer, b""
        return self._parse([rest])

    @staticmethod
    def _parse(lines: list[bytes]) -> list[Any]:
        values = []
        loads = _loads
        for line in lines:
            if not line or line.isspace():
                continue
            try:
                values.append(loads(line))
            except ValueError:  # JSONDecodeError and UnicodeDecodeError
                raise MalformedLineError(line) from None
        return values
