"""The SSE and NDJSON decoders on their own: every split point, CRLF, UTF-8, properties;
linear cost on long lines and the line-length limit (also through a real HTTP stream)."""

from __future__ import annotations

import json
import time

import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from llmplex.errors import ResponseError
from llmplex.http import MalformedLineError, NDJSONDecoder, ServerSentEvent, SSEDecoder
from llmplex.http.ndjson import LineTooLongError
from llmplex.http.sse import MAX_LINE_BYTES

# A Replicate stream as recorded (PROTOCOLS.md §4), with a multi-line token, a comment,
# a logs event, CRLF and CR line ends, and non-ASCII text.
REPLICATE_STREAM = (
    b"event: output\nid: 1690212292:0\ndata: Once upon\n\n"
    b"event: output\r\nid: 1690212292:1\r\ndata:  a time\r\n\r\n"
    b": keep-alive comment\n\n"
    b"event: logs\nid: 1690212292:2\ndata: loading weights\n\n"
    b"event: output\rid: 1690212292:3\rdata:  eyes\rdata: \r\r"
    + "event: output\nid: 1690212292:4\ndata:  привет 你好 😀\n\n".encode()
    + b"event: done\nid: 1690212293:1\ndata: {}\n\n"
)
REPLICATE_EVENTS = [
    ServerSentEvent("Once upon", "output", "1690212292:0"),
    ServerSentEvent(" a time", "output", "1690212292:1"),
    ServerSentEvent("loading weights", "logs", "1690212292:2"),
    ServerSentEvent(" eyes\n", "output", "1690212292:3"),
    ServerSentEvent(" привет 你好 😀", "output", "1690212292:4"),
    ServerSentEvent("{}", "done", "1690212293:1"),
]


def decode_sse(parts: list[bytes]) -> list[ServerSentEvent]:
    decoder = SSEDecoder()
    events: list[ServerSentEvent] = []
    for part in parts:
        events.extend(decoder.feed(part))
    events.extend(decoder.close())
    return events


def test_sse_whole_stream():
    assert decode_sse([REPLICATE_STREAM]) == REPLICATE_EVENTS


@pytest.mark.parametrize("cut", range(len(REPLICATE_STREAM) + 1))
def test_sse_every_single_split_point(cut):
    assert decode_sse([REPLICATE_STREAM[:cut], REPLICATE_STREAM[cut:]]) == REPLICATE_EVENTS


def test_sse_byte_by_byte():
    assert decode_sse([bytes([b]) for b in REPLICATE_STREAM]) == REPLICATE_EVENTS


def test_sse_crlf_split_between_cr_and_lf_is_one_line_end():
    # "data: a\r" | "\n\r\n": had the LF been taken as a second line end, the event would
    # be dispatched early and the next blank line would be a stray one; both must agree.
    assert decode_sse([b"data: a\r", b"\n\r\n", b"data: b\r\n\r\n"]) == [
        ServerSentEvent("a"),
        ServerSentEvent("b"),
    ]


def test_sse_fields_per_spec():
    stream = (
        b"data:no-space\n\n"  # TGI style: no space after the colon
        b"data:  two spaces keep one\n\n"
        b"event\ndata\n\n"  # a field without colon: empty value
        b"retry: 1500\nid: x\ndata: r\n\n"
        b"retry: soon\ndata: r2\n\n"  # non-digit retry ignored
        b"event: nodata\n\n"  # no data: not dispatched
        b"unknown: field\ndata: u\n\n"
        b"id: bad\x00id\ndata: keep-last-id\n\n"
    )
    assert decode_sse([stream]) == [
        ServerSentEvent("no-space"),
        ServerSentEvent(" two spaces keep one"),
        ServerSentEvent("", "message"),  # "event" with empty value falls back to message
        ServerSentEvent("r", id="x", retry=1500),
        ServerSentEvent("r2", id="x", retry=1500),
        ServerSentEvent("u", id="x", retry=1500),
        ServerSentEvent("keep-last-id", id="x", retry=1500),
    ]


def test_sse_unterminated_event_is_dropped_at_close():
    assert decode_sse([b"data: complete\n\ndata: never ended\n"]) == [ServerSentEvent("complete")]


def test_sse_invalid_utf8_is_replaced_not_fatal():
    assert decode_sse([b"data: \xff\xfe ok\n\n"]) == [ServerSentEvent("\ufffd\ufffd ok")]


def _render_sse(events: list[tuple[str, str]], newline: bytes) -> bytes:
    out = b""
    for event, data in events:
        out += b"event: " + event.encode() + newline
        for line in data.split("\n"):
            out += b"data: " + line.encode() + newline
        out += newline
    return out


_field_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x00"),
    max_size=20,
)


@settings(max_examples=300, deadline=None)
@given(
    events=st.lists(
        st.tuples(
            _field_text.filter(lambda s: s and s.strip() == s and ":" not in s),
            st.lists(_field_text, min_size=1, max_size=3).map("\n".join),
        ),
        max_size=8,
    ),
    newline=st.sampled_from([b"\n", b"\r\n", b"\r"]),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12),
)
def test_sse_property_any_split_any_newline(events, newline, cuts):
    data = _render_sse(events, newline)
    points = sorted({c % (len(data) + 1) for c in cuts})
    parts = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=False)]
    decoded = decode_sse(parts)
    # Values that start with a space lose exactly that one space ("data:  x" -> " x" ...)
    # because the renderer writes "data: " + value: the decoder strips the one it added.
    assert [(e.event, e.data) for e in decoded] == events


# -- NDJSON ------------------------------------------------------------------------------

AI2_STREAM = (
    json.dumps({"id": "msg_A8E5H1X2O4", "content": "Привет", "children": []}).encode()
    + b"\n"
    + json.dumps(
        {"message": "msg_V6Y0U4H4O9", "content": "你好 ", "logprobs": []}, ensure_ascii=False
    ).encode()
    + b"\r\n"
    + b"\n"
    + json.dumps(
        {"message": "msg_V6Y0U4H4O9", "content": "😀", "logprobs": []}, ensure_ascii=False
    ).encode()
    + b"\n"
    + json.dumps({"id": "msg_A8E5H1X2O4", "final": True}).encode()
    + b"\n"
)
AI2_VALUES = [
    {"id": "msg_A8E5H1X2O4", "content": "Привет", "children": []},
    {"message": "msg_V6Y0U4H4O9", "content": "你好 ", "logprobs": []},
    {"message": "msg_V6Y0U4H4O9", "content": "😀", "logprobs": []},
    {"id": "msg_A8E5H1X2O4", "final": True},
]


def decode_ndjson(parts: list[bytes]) -> list:
    decoder = NDJSONDecoder()
    values = []
    for part in parts:
        values.extend(decoder.feed(part))
    values.extend(decoder.close())
    return values


@pytest.mark.parametrize("cut", range(len(AI2_STREAM) + 1))
def test_ndjson_every_single_split_point(cut):
    assert decode_ndjson([AI2_STREAM[:cut], AI2_STREAM[cut:]]) == AI2_VALUES


def test_ndjson_byte_by_byte_and_last_line_without_newline():
    stream = AI2_STREAM.rstrip(b"\n")
    assert decode_ndjson([bytes([b]) for b in stream]) == AI2_VALUES


def test_ndjson_malformed_line_raises_with_the_line():
    decoder = NDJSONDecoder()
    assert decoder.feed(b'{"a": 1}\n{not js') == [{"a": 1}]
    with pytest.raises(MalformedLineError) as info:
        decoder.feed(b"on}\n")
    assert info.value.line == b"{not json}"
    assert isinstance(info.value, ValueError)


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(),
            lambda inner: (
                st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3)
            ),
            max_leaves=6,
        ),
        max_size=6,
    ),
    crlf=st.booleans(),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=10),
)
def test_ndjson_property_any_split(values, crlf, cuts):
    newline = b"\r\n" if crlf else b"\n"
    data = b"".join(json.dumps(v, ensure_ascii=False).encode() + newline for v in values)
    points = sorted({c % (len(data) + 1) for c in cuts})
    parts = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=False)]
    assert decode_ndjson(parts) == values


# -- long lines: linear cost, bounded size -------------------------------------------------

PIECE = 64 * 1024
MiB = 1024 * 1024


def _feed_long_line(decoder, head: bytes, size: int, tail: bytes, budget: float | None = None):
    """Feed ``head``, ``size`` bytes of ``x`` in 64 KiB reads (one piece object, fed again
    and again: the test holds no copy of the line), then ``tail``. Returns (thread CPU
    seconds, results); stops early, returning None as the results, once ``budget`` CPU
    seconds are spent (a quadratic decoder need not be watched to the end)."""
    piece = b"x" * PIECE
    out = list(decoder.feed(head))
    start = time.thread_time()
    for _ in range(size // PIECE):
        out += decoder.feed(piece)
        if budget is not None and time.thread_time() - start > budget:
            return time.thread_time() - start, None
    out += decoder.feed(tail)
    return time.thread_time() - start, out


@pytest.mark.parametrize("kind", ["sse", "ndjson"])
def test_a_long_line_costs_time_linear_in_its_length(kind):
    """Feeding a 32 MB line in 64 KiB reads costs as much per read at its end as at its
    start: the last 4 MB take about the time of the first 4 MB (a quadratic decoder, which
    re-joins and re-scans the line on every read, took ~15x as long for them, and 13 s for
    the whole SSE line). Thread CPU time of the reads alone (the final join and decoding
    allocate the whole line, whose page faults are no measure of the decoder), best of
    three, against a bound of 4x that neither other processes nor a busy machine reach."""
    if kind == "sse":
        make, head, tail = SSEDecoder, b"data: ", b"\n\n"
    else:
        make, head, tail = NDJSONDecoder, b'"', b'"\n'
    piece = b"x" * PIECE
    reads = 32 * MiB // PIECE
    quarter = 4 * MiB // PIECE
    ratios = []
    for _ in range(3):
        decoder = make(max_line_bytes=64 * MiB)
        assert decoder.feed(head) == []
        marks = []
        for i in range(reads):
            if i in (quarter, reads - quarter):
                marks.append(time.thread_time())
            if i == 0:
                start = time.thread_time()
            assert decoder.feed(piece) == []
        end = time.thread_time()
        first, last = marks[0] - start, end - marks[1]
        out = decoder.feed(tail)
        value = out[0].data if kind == "sse" else out[0]
        assert len(value) == 32 * MiB
        ratios.append(last / max(first, 0.0005))
        if ratios[-1] < 4:
            break
    else:
        pytest.fail(f"the last 4 MB of the line cost {min(ratios):.1f}x the first 4 MB")


def test_the_default_line_limit_is_16_mib():
    assert MAX_LINE_BYTES == 16 * MiB
    assert SSEDecoder().max_line_bytes == NDJSONDecoder().max_line_bytes == MAX_LINE_BYTES
    with pytest.raises(ValueError):
        SSEDecoder(max_line_bytes=0)
    with pytest.raises(ValueError):
        NDJSONDecoder(max_line_bytes=-1)


def test_a_line_over_the_default_limit_raises_while_it_arrives():
    """17 MiB of one SSE line: the decoder fails once it holds 16 MiB and a read, without
    waiting for the line end (which a hostile upstream never sends)."""
    decoder = SSEDecoder()
    with pytest.raises(LineTooLongError) as info:
        _feed_long_line(decoder, b"data: ", 17 * MiB, b"\n\n")
    error = info.value
    assert isinstance(error, MalformedLineError) and isinstance(error, ValueError)
    assert error.limit == MAX_LINE_BYTES and MAX_LINE_BYTES < error.size <= MAX_LINE_BYTES + PIECE
    assert error.line.startswith(b"data: xxx") and len(error.line) <= 200
    assert "longer than 16777216 bytes" in str(error)
    # The decoder dropped what it held; it decodes a fresh stream afterwards.
    assert decoder.feed(b"data: ok\n\n") == [ServerSentEvent("ok")]


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
@pytest.mark.parametrize("split", ["whole", "bytes", "halves"])
def test_sse_limit_is_exact_and_counts_no_line_end(newline, split):
    limit = 40

    def decode(stream):
        if split == "whole":
            parts = [stream]
        elif split == "bytes":
            parts = [stream[i : i + 1] for i in range(len(stream))]
        else:
            parts = [stream[: len(stream) // 2], stream[len(stream) // 2 :]]
        decoder = SSEDecoder(max_line_bytes=limit)
        events = []
        for part in parts:
            events += decoder.feed(part)
        return events

    fits = b"data: " + b"a" * (limit - 6)
    assert decode(fits + newline + newline) == [ServerSentEvent("a" * (limit - 6))]
    with pytest.raises(LineTooLongError):
        decode(b"data: ok" + newline + newline + fits + b"a" + newline + newline)
    # The data of one event is bounded too, however many lines bring it.
    line = b"data: " + b"b" * 9 + newline  # 9 bytes each, 10 with the joining newline
    assert decode(line * 4 + newline) == [ServerSentEvent("\n".join(["b" * 9] * 4))]  # 39
    with pytest.raises(LineTooLongError, match="event data"):
        decode(line * 5 + newline)  # 49
    # Comments and other lines count as lines, not as data.
    with pytest.raises(LineTooLongError):
        decode(b":" + b"c" * limit + newline)


@pytest.mark.parametrize("split", ["whole", "bytes"])
def test_ndjson_limit_is_exact(split):
    limit = 20
    fits = json.dumps("a" * (limit - 2)).encode()
    assert len(fits) == limit

    def decode(stream):
        parts = [stream] if split == "whole" else [stream[i : i + 1] for i in range(len(stream))]
        decoder = NDJSONDecoder(max_line_bytes=limit)
        values = []
        for part in parts:
            values += decoder.feed(part)
        return values + decoder.close()

    assert decode(fits + b"\n" + fits) == ["a" * (limit - 2)] * 2  # the last one at close
    with pytest.raises(LineTooLongError):
        decode(b"1\n" + json.dumps("a" * (limit - 1)).encode() + b"\n")
    with pytest.raises(LineTooLongError):
        decode(b"1\n" + b" " * (limit + 1))  # even blank, a line is a line
    with pytest.raises(LineTooLongError):  # a last line without newline is not let through
        decode(b"1\n" + json.dumps("a" * (limit - 1)).encode())


def _pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=False)]


def _sse_outcome(parts: list[bytes], limit: int):
    decoder = SSEDecoder(max_line_bytes=limit)
    events = []
    try:
        for part in parts:
            events += decoder.feed(part)
    except LineTooLongError:
        return "too long"
    return [(e.event, e.data) for e in events]


_long_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x00"),
    max_size=3000,
)


@settings(max_examples=300, deadline=None)
@given(
    events=st.lists(
        st.tuples(
            st.sampled_from(["message", "output", "x" * 50]),
            st.lists(st.one_of(_field_text, _long_text), min_size=1, max_size=4).map("\n".join),
        ),
        max_size=6,
    ),
    newline=st.sampled_from([b"\n", b"\r\n", b"\r"]),
    cuts=st.lists(st.integers(min_value=0, max_value=100_000), max_size=40),
    limit=st.integers(min_value=1, max_value=12_000),
)
def test_sse_property_long_lines_any_split_any_limit(events, newline, cuts, limit):
    """Long lines, any split, any limit: the split never changes the outcome (the same
    events, or the same LineTooLongError), and the error comes exactly when a line or the
    data of an event exceeds the limit."""
    data = _render_sse(events, newline)
    whole = _sse_outcome([data], limit)
    assert _sse_outcome(_pieces(data, cuts), limit) == whole
    lines = [line for line in data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")]
    datas = [len(d.encode()) for _, d in events]
    too_long = max(map(len, lines), default=0) > limit or max(datas, default=0) > limit
    assert (whole == "too long") == too_long
    if not too_long:
        assert whole == events


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.one_of(st.integers(), st.text(max_size=3000)), max_size=6),
    crlf=st.booleans(),
    cuts=st.lists(st.integers(min_value=0, max_value=100_000), max_size=40),
    limit=st.integers(min_value=1, max_value=12_000),
)
def test_ndjson_property_long_lines_any_split_any_limit(values, crlf, cuts, limit):
    newline = b"\r\n" if crlf else b"\n"
    lines = [json.dumps(v, ensure_ascii=False).encode() + newline[:-1] for v in values]
    data = b"".join(line + b"\n" for line in lines)

    def outcome(parts):
        decoder = NDJSONDecoder(max_line_bytes=limit)
        out = []
        try:
            for part in parts:
                out += decoder.feed(part)
            return out + decoder.close()
        except LineTooLongError:
            return "too long"

    whole = outcome([data])
    assert outcome(_pieces(data, cuts)) == whole
    assert (whole == "too long") == (max(map(len, lines), default=0) > limit)
    if whole != "too long":
        assert whole == values


async def test_an_over_long_line_from_an_upstream_is_a_response_error():
    """Through a real HTTP stream and the Session: the session maps the decoder's error
    (a MalformedLineError) to a ResponseError naming the provider, and stops reading."""
    from llmplex.http.session import Session

    async def handler(request):
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"data: first\n\ndata: ")
        piece = b"y" * PIECE
        try:
            for _ in range((MAX_LINE_BYTES + 2 * MiB) // PIECE):
                await response.write(piece)
            await response.write(b"\n\n")
        except (ConnectionError, RuntimeError):  # the client gave up: as it should
            pass
        return response

    app = web.Application()
    app.router.add_get("/stream", handler)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        url = f"http://127.0.0.1:{port}/stream"
        seen = []
        async with (
            Session("Hostile", timeout=30) as session,
            session.request("GET", url) as response,
        ):
            with pytest.raises(ResponseError) as info:
                async for event in session.sse(response):
                    seen.append(event.data)
        assert seen == ["first"]
        assert info.value.provider == "Hostile"
        assert "longer than 16777216 bytes" in str(info.value)
    finally:
        await runner.cleanup()
