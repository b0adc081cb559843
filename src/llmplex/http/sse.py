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

__all__ = ["ServerSentEvent", "SSEDecoder"]


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

    def json(self):
        """The data parsed as JSON."""
        import json

        return json.loads(self.data)

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
        for line in lines:
            if not line:
                if self._data is not None:
                    events.append(
                        ServerSentEvent(
                            b"\n".join(self._data).decode("utf-8", "replace"),
                            self._event.decode("utf-8", "replace") if self._event else "message",
                            self._last_id,
                            self._retry,
                        )
                    )
                self._event = None
                self._data = None
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
                if self._data is None:
                    self._data = [value]
                else:
                    self._data.append(value)
            elif field == b"event":
                self._event = value
            elif field == b"id":
                if b"\0" not in value:
                    self._last_id = value.decode("utf-8", "replace")
            elif field == b"retry":
                if value.isdigit():
                    self._retry = int(value)
            # other fields are ignored, as the spec says
        return events
