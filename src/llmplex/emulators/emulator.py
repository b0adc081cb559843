"""The base of every service emulator: scripts, request records, fault playback.

An emulator is an object that builds an ``aiohttp.web.Application`` speaking one
service's protocol byte for byte (see ``shared/PROTOCOLS.md``), keeps that service's
per-session state, records every request it receives, and answers according to a
:class:`~llmplex.emulators.script.Script`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from aiohttp import web

from .script import Fault, Script

__all__ = ["Emulator", "RecordedRequest", "StreamOutcome"]


@dataclass
class RecordedRequest:
    """What the emulator received: tests assert on it (no leaked options, cleanup sent)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    json: Any = None
    form: dict[str, Any] = field(default_factory=dict)
    cookies: dict[str, str] = field(default_factory=dict)
    peer: tuple[str, int] | None = None  # the client's address: one per TCP connection

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class StreamOutcome:
    """How :meth:`Emulator.play` ended: ``"complete"``, ``"error"`` (an error event was
    sent: the caller sends what the service sends after one) or ``"aborted"`` (the
    connection was cut, or the client went away: send nothing more)."""

    COMPLETE = "complete"
    ERROR = "error"
    ABORTED = "aborted"


class Emulator:
    """Base class: script queue, request log, open-stream counter, stream playback."""

    #: short name used by ``llmplex emulate`` and the fixtures ("allenai", "replicate"...)
    name: ClassVar[str] = ""
    #: the provider class this emulator stands in for
    provider: ClassVar[str] = ""

    def __init__(self, script: Script | None = None) -> None:
        self.script = script or Script()
        self._queue: deque[Script] = deque()
        self.requests: list[RecordedRequest] = []
        self.open_streams = 0  # streams being written right now
        self.url: str | None = None  # set by the server once listening
        self._connections: Callable[[], int] | None = None  # set by the server too
        #: seconds every request waits before it is answered: a slow service, e.g. to
        #: cancel a client while its request is in flight
        self.latency = 0.0

    @property
    def open_connections(self) -> int:
        """TCP connections clients hold open to this emulator right now (keep-alive ones
        included): how tests see that a client closed, or kept, its connections."""
        return self._connections() if self._connections is not None else 0

    # -- scripting -------------------------------------------------------------------------

    def push(self, *scripts: Script) -> None:
        """Queue one-shot scripts, used (in order) by the next answers before the default."""
        self._queue.extend(scripts)

    def next_script(self) -> Script:
        return self._queue.popleft() if self._queue else self.script

    def reset(self) -> None:
        """Forget recorded requests, queued scripts and per-session state."""
        self._queue.clear()
        self.requests.clear()

    # -- to implement ----------------------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        raise NotImplementedError

    def app(self) -> web.Application:
        application = web.Application(client_max_size=8 * 1024 * 1024)
        application.add_routes(self.routes())
        return application

    # -- helpers for subclasses ------------------------------------------------------------

    async def record(self, request: web.Request) -> RecordedRequest:
        """Read and log the request (body, JSON or form fields), then wait the emulator's
        :attr:`latency`: every handler starts here."""
        body = await request.read()
        record = RecordedRequest(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers=dict(request.headers),
            body=body,
            cookies=dict(request.cookies),
            peer=request.transport.get_extra_info("peername") if request.transport else None,
        )
        ctype = request.content_type
        if ctype == "application/json" and body:
            try:
                record.json = json.loads(body)
            except ValueError:
                pass
        elif ctype in ("application/x-www-form-urlencoded", "multipart/form-data") and body:
            record.form = await _parse_form(request, body)
        self.requests.append(record)
        if self.latency:
            await asyncio.sleep(self.latency)
        return record

    def requests_to(self, path_part: str, method: str | None = None) -> list[RecordedRequest]:
        """Recorded requests whose path contains ``path_part`` (and of ``method``)."""
        return [
            r
            for r in self.requests
            if path_part in r.path and (method is None or r.method == method)
        ]

    async def play(
        self,
        request: web.Request,
        response: web.StreamResponse,
        script: Script,
        render: Callable[[str, int], bytes],
        *,
        error: Callable[[Fault], bytes],
        malformed: bytes = b"{this is not json\n",
        on_chunk: Callable[[str], Awaitable[None] | None] | None = None,
    ) -> str:
        """Write the script's chunks with ``render(piece, index)``, injecting its stream
        fault. Returns a :class:`StreamOutcome` value."""
        pieces = script.pieces()
        fault = script.fault
        if fault is not None and fault.kind not in (
            "error_event",
            "disconnect",
            "malformed",
            "stall",
        ):
            fault = None
        self.open_streams += 1
        try:
            for index in range(len(pieces) + 1):
                if fault is not None and fault.after == index:
                    if fault.kind == "stall":
                        await asyncio.sleep(fault.seconds)
                    elif fault.kind == "error_event":
                        await response.write(error(fault))
                        return StreamOutcome.ERROR
                    elif fault.kind == "malformed":
                        await response.write(malformed)
                        return StreamOutcome.ABORTED
                    elif fault.kind == "disconnect":
                        _cut(request)
                        return StreamOutcome.ABORTED
                if index == len(pieces):
                    break
                if script.delay:
                    await asyncio.sleep(script.delay)
                await response.write(render(pieces[index], index))
                if on_chunk is not None:
                    result = on_chunk(pieces[index])
                    if result is not None:
                        await result
            return StreamOutcome.COMPLETE
        except (ConnectionResetError, ConnectionError, asyncio.CancelledError):
            return StreamOutcome.ABORTED
        finally:
            self.open_streams -= 1


def _cut(request: web.Request) -> None:
    """Drop the TCP connection mid-body (the client sees an incomplete response)."""
    transport = request.transport
    if transport is not None:
        transport.abort()


async def _parse_form(request: web.Request, body: bytes) -> dict[str, Any]:
    """Form fields of a urlencoded or multipart body already read into ``body``.

    Repeated fields become lists; file parts (with a ``filename``) are bytes, the others
    text in their part's charset (UTF-8 by default). ``request.post()`` would find the body
    already consumed, so multipart is split here from the cached bytes, in one linear pass
    whatever the size. An unparsable body gives no fields, so the request then fails
    validation, as on the real servers.
    """
    from urllib.parse import parse_qsl

    fields: dict[str, Any] = {}

    def add(key: str, value: Any) -> None:
        if key in fields:
            existing = fields[key]
            fields[key] = [*existing, value] if isinstance(existing, list) else [existing, value]
        else:
            fields[key] = value

    if request.content_type == "application/x-www-form-urlencoded":
        for key, value in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
            add(key, value)
        return fields
    try:
        for name, part in _multipart_fields(request.headers.get("Content-Type", ""), body):
            add(name, part)
    except (ValueError, LookupError, UnicodeDecodeError):
        return {}
    return fields


def _multipart_fields(content_type: str, body: bytes) -> Iterator[tuple[str, str | bytes]]:
    """``(name, value)`` of each named part of a ``multipart/form-data`` body (RFC 7578):
    ``bytes`` for a file part, else its text. Raises ``ValueError`` on a malformed body."""
    from email.message import Message

    from aiohttp.multipart import (
        content_disposition_filename,
        parse_content_disposition,
    )

    header = Message()
    header["Content-Type"] = content_type
    boundary = header.get_param("boundary")
    if not isinstance(boundary, str) or not boundary:
        raise ValueError("multipart body without a boundary")
    delimiter = b"\r\n--" + boundary.encode("latin-1")
    # The first delimiter opens the body, or follows a preamble and its CRLF.
    if body.startswith(delimiter[2:]):
        at = len(delimiter) - 2
    else:
        found = body.find(delimiter)
        if found < 0:
            raise ValueError("no multipart delimiter")
        at = found + len(delimiter)
    while not body.startswith(b"--", at):  # "--" after a delimiter closes the body
        eol = body.find(b"\r\n", at)
        if eol < 0 or body[at:eol].strip(b" \t"):
            raise ValueError("malformed multipart delimiter line")
        start = eol + 2
        end = body.find(delimiter, start)
        if end < 0:
            raise ValueError("unterminated multipart part")
        part = body[start:end]
        at = end + len(delimiter)
        split = -2 if part.startswith(b"\r\n") else part.find(b"\r\n\r\n")
        if split == -1:
            raise ValueError("multipart part without a header block")
        headers: dict[str, str] = {}
        lines = part[: max(split, 0)].decode("utf-8", "surrogateescape").split("\r\n")
        for line in lines if split > 0 else ():
            if line[:1] in (" ", "\t") and headers:  # a folded header continues
                last = next(reversed(headers))
                headers[last] += " " + line.strip()
                continue
            key, colon, value = line.partition(":")
            if not colon:
                raise ValueError("malformed multipart header")
            headers[key.strip().lower()] = value.strip()
        content = part[split + 4 :]
        _, params = parse_content_disposition(headers.get("content-disposition"))
        name = params.get("name")
        if name is None:
            continue
        encoding = headers.get("content-transfer-encoding", "").lower()
        if encoding == "base64":
            content = base64.b64decode(content)
        elif encoding == "quoted-printable":
            content = binascii.a2b_qp(content)
        elif encoding not in ("", "binary", "7bit", "8bit"):
            raise ValueError(f"unknown Content-Transfer-Encoding {encoding!r}")
        if content_disposition_filename(params, "filename") is not None:
            yield name, content
        else:
            part_type = Message()
            part_type["Content-Type"] = headers.get("content-type", "text/plain")
            charset = part_type.get_param("charset")
            yield name, content.decode(charset if isinstance(charset, str) else "utf-8")
