"""The server's fast chunk rendering (``ChunkRenderer``: text chunks from a template made
once per stream) writes exactly the bytes of the full rendering (``render_chunk``: the
chunk dumped to a dict, made public, dumped to JSON), chunk after chunk, whatever the
text and whatever changes between chunks."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmplex.objects import (
    ChatCompletionChunk,
    ChoiceDelta,
    ChoiceDeltaToolCall,
    ChoiceDeltaToolCallFunction,
    ChunkChoice,
    CompletionUsage,
)
from llmplex.server.streaming import ChunkRenderer, render_chunk

TEXTS = [
    "hello",
    "",
    " ",
    'quote " and \\ backslash',
    "line\nbreak\r\ttab",
    "\u2028\u2029",
    "Привет",
    "漢字",
    "🎉👍🏽",
    "\x00\x1f\x7f",
    "\ue000llmplex-text\ue000",
    "null",
    "{}",
]


def chunk(
    text: str | None = "hello",
    *,
    id: str = "chatcmpl-1",
    model: str = "m",
    provider: str = "OpenAI",
    emulated: list[str] | None = None,
    conversation_id: str | None = None,
    fingerprint: str | None = None,
    **delta: object,
) -> ChatCompletionChunk:
    finish = delta.pop("finish_reason", None)
    usage = delta.pop("usage", None)
    index = delta.pop("index", 0)
    return ChatCompletionChunk(
        id,
        1700000000,
        model,
        provider,
        [ChunkChoice(ChoiceDelta(text, **delta), finish, index)],
        usage=usage,
        emulated=emulated,
        conversation_id=conversation_id,
        system_fingerprint=fingerprint,
    )


STREAM = [
    chunk("Hi", role="assistant"),
    *(chunk(t) for t in TEXTS),
    chunk("same text, other model", model="m2"),
    chunk("and back", model="m"),
    chunk("emulated", emulated=["tools"]),
    chunk("emulated again", emulated=["tools"]),
    chunk("other emulation", emulated=["tools", "response_format"]),
    chunk("conversation", conversation_id="conv-1"),
    chunk("fingerprint", fingerprint="fp_1"),
    chunk("\ue000llmplex-text\ue000", id="\ue000llmplex-text\ue000"),  # the sentinel in a field
    chunk("other id", id="chatcmpl-2"),
    chunk("second choice", index=1),
    chunk(None, reasoning_content="thinking"),
    chunk("text and refusal", refusal="no"),
    chunk(
        None,
        tool_calls=[
            ChoiceDeltaToolCall(0, "call_1", ChoiceDeltaToolCallFunction("f", "{}"), "function")
        ],
    ),
    chunk("after a tool call"),
    chunk(None, finish_reason="stop"),
    chunk(None, finish_reason="stop", usage=CompletionUsage(3, 4)),
    chunk("text at the end"),
]


@pytest.mark.parametrize("include_usage", [False, True])
def test_a_stream_renders_byte_for_byte_as_the_full_rendering(include_usage):
    render = ChunkRenderer(include_usage)
    for c in STREAM:
        assert render(c) == render_chunk(c, include_usage), c
    # and the fast path did serve most of them (else this test proves nothing about it)
    assert render._key is not None


def test_the_fast_path_is_taken_for_text_chunks():
    """A text chunk after the template exists is rendered without dumping the chunk: a
    chunk whose model_dump would fail still renders (from the template)."""
    render = ChunkRenderer(False)
    render(chunk("first"))

    class Undumpable(ChatCompletionChunk):
        __slots__ = ()

        def model_dump(self, **_: object) -> dict[str, object]:
            raise AssertionError("dumped")

    odd = Undumpable("chatcmpl-1", 1700000000, "m", "OpenAI", [ChunkChoice(ChoiceDelta("x"))])
    assert render(odd) == render_chunk(chunk("x"), False)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.text(), st.sampled_from(["m", "m2"]), st.sampled_from([None, ["tools"]])),
        min_size=1,
        max_size=8,
    ),
    st.booleans(),
)
def test_any_text_renders_as_the_full_rendering(items, include_usage):
    render = ChunkRenderer(include_usage)
    for text, model, emulated in items:
        c = chunk(text, model=model, emulated=emulated)
        try:
            expected = render_chunk(c, include_usage)
        except UnicodeEncodeError:  # a lone surrogate: both refuse it
            with pytest.raises(UnicodeEncodeError):
                render(c)
            continue
        got = render(c)
        assert got == expected
        assert json.loads(got.removeprefix(b"data: "))["choices"][0]["delta"]["content"] == text
