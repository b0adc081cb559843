"""The SSE and NDJSON decoders on their own: every split point, CRLF, UTF-8, properties."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmplex.http import MalformedLineError, NDJSONDecoder, ServerSentEvent, SSEDecoder

# A Replicate stream as recorded (PROTOCOLS.md §4), with a multi-line token, a comment,
# a logs event, CRLF and CR line ends, and non-ASCII text.
REPLICATE_STREAM = (
    b"event: output\nid: 1690212292:0\ndata: Once upon\n\n"
    b"event: output\r\nid: 1690212292:1\r\ndata:  a time\r\n\r\n"
    b": keep-alive comment\n\n"
    b"event: logs\nid: 1690212292:2\ndata: loading weights\n\n"
    b"event: output\rid: 1690212292:3\rdata:  eyes\rdata: \r\r"
    + "event: output\nid: 1690212292:4\ndata:  привет 你好 😀\n\n".encode()
    + b'event: done\nid: 1690212293:1\ndata: {}\n\n'
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
    assert decode_sse([b"data: complete\n\ndata: never ended\n"]) == [
        ServerSentEvent("complete")
    ]


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
    parts = [data[a:b] for a, b in zip([0, *points], [*points, len(data)])]
    decoded = decode_sse(parts)
    # Values that start with a space lose exactly that one space ("data:  x" -> " x" ...)
    # because the renderer writes "data: " + value: the decoder strips the one it added.
    assert [(e.event, e.data) for e in decoded] == events


# -- NDJSON ------------------------------------------------------------------------------

AI2_STREAM = (
    json.dumps({"id": "msg_A8E5H1X2O4", "content": "Привет", "children": []}).encode() + b"\n"
    + json.dumps({"message": "msg_V6Y0U4H4O9", "content": "你好 ", "logprobs": []},
                 ensure_ascii=False).encode() + b"\r\n"
    + b"\n"
    + json.dumps({"message": "msg_V6Y0U4H4O9", "content": "😀", "logprobs": []},
                 ensure_ascii=False).encode() + b"\n"
    + json.dumps({"id": "msg_A8E5H1X2O4", "final": True}).encode() + b"\n"
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
            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
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
    parts = [data[a:b] for a, b in zip([0, *points], [*points, len(data)])]
    assert decode_ndjson(parts) == values
