"""Emoji streamed as two JSON surrogate escapes in two events join into one character; a
half that stays alone becomes U+FFFD. Property-tested on the joiner, then end to end from
a raw upstream of the tests' own (the emulators write real UTF-8, as most services do)
through the provider, AsyncClient and the server."""

from __future__ import annotations

import itertools
import json

import httpx
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from llmplex import AsyncClient
from llmplex.conversations import MemoryStore
from llmplex.providers import OpenAICompatible
from llmplex.server import ServerThread, create_app
from llmplex.surrogates import Surrogates, fix_surrogates
from llmplex.testing import serve


def code_units(text: str) -> list[str]:
    """``text`` as UTF-16 code units, each a one-character str (halves for astral ones)."""
    raw = text.encode("utf-16-le", "surrogatepass")
    return [raw[i : i + 2].decode("utf-16-le", "surrogatepass") for i in range(0, len(raw), 2)]


# any characters, astral ones and lone surrogates included
TEXT = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x1FFFF, blacklist_categories=("Cc",)),
    max_size=40,
)


@given(TEXT, st.lists(st.integers(min_value=0, max_value=200), max_size=12))
def test_any_split_joins_to_the_same_valid_text(text, cuts):
    units = code_units(text)
    points = sorted({min(c, len(units)) for c in cuts} | {0, len(units)})
    pieces = ["".join(units[a:b]) for a, b in itertools.pairwise(points)]
    joiner = Surrogates()
    out = [joiner.feed(piece) for piece in pieces] + [joiner.flush()]
    assert "".join(out) == fix_surrogates(text)
    for piece in out:
        piece.encode("utf-8")  # every piece given out is valid text


def test_pairs_join_and_lone_halves_are_replaced():
    joiner = Surrogates()
    assert joiner.feed("a\ud83d") == "a"
    assert joiner.feed("\ude00b") == "\U0001f600b"
    assert joiner.feed("\ude00") == "\ufffd"  # a low half alone
    assert joiner.feed("x\ud83d") == "x"
    assert joiner.feed("y") == "\ufffdy"  # a high half not followed by its low one
    assert joiner.feed("\ud83d") == "" and joiner.flush() == "\ufffd"


PIECES = ["Smile ", "\\ud83d", "\\ude00", "!", " lone ", "\\ud83d"]


class SplitEmoji:
    """An OpenAI-compatible upstream that escapes as ASCII JSON and splits an emoji's two
    halves into two events (and ends with a lone half)."""

    name = "split-emoji"

    def __init__(self) -> None:
        self.url: str | None = None
        self._connections = None

    def app(self) -> web.Application:
        async def chat(request: web.Request) -> web.StreamResponse:
            body = await request.json()
            if not body.get("stream"):
                return web.json_response({"error": {"message": "stream only"}}, status=400)
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            for piece in PIECES:
                event = (
                    '{"id":"c","object":"chat.completion.chunk","model":"m","choices":'
                    f'[{{"index":0,"delta":{{"content":"{piece}"}},"finish_reason":null}}]}}'
                )
                await response.write(f"data: {event}\n\n".encode())
            await response.write(
                b'data: {"id":"c","choices":[{"index":0,"delta":{},'
                b'"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
            )
            return response

        application = web.Application()
        application.add_routes([web.post("/v1/chat/completions", chat)])
        return application


def split_emoji():
    return serve(SplitEmoji())


EXPECTED = "Smile \U0001f600! lone \ufffd"


async def test_the_provider_joins_halves_across_events():
    with split_emoji() as upstream:
        chunks = [
            c
            async for c in OpenAICompatible.create_async_generator(
                "m", "Hi", base_url=upstream.url + "/v1"
            )
        ]
    texts = [c for c in chunks if isinstance(c, str)]
    assert "".join(texts) == EXPECTED
    for text in texts:
        text.encode("utf-8")


async def test_async_client_streamed_and_whole():
    with split_emoji() as upstream:
        async with AsyncClient(
            store=MemoryStore(),
            provider_options={"OpenAICompatible": {"base_url": upstream.url + "/v1"}},
        ) as client:
            whole = await client.chat.completions.create(model="openaicompatible:m", messages="Hi")
            assert whole.choices[0].message.content == EXPECTED
            stream = await client.chat.completions.create(
                model="openaicompatible:m", messages="Hi", stream=True
            )
            text = "".join([c.choices[0].delta.content or "" async for c in stream])
            assert text == EXPECTED


def test_the_server_answers_valid_utf8_streamed_and_whole():
    with split_emoji() as upstream:
        client = AsyncClient(
            store=MemoryStore(),
            provider_options={"OpenAICompatible": {"base_url": upstream.url + "/v1"}},
        )
        with ServerThread(create_app(client)) as server:
            body = {"model": "openaicompatible:m", "messages": [{"role": "user", "content": "Hi"}]}
            response = httpx.post(server.url + "/v1/chat/completions", json=body, timeout=15)
            assert response.status_code == 200
            assert response.json()["choices"][0]["message"]["content"] == EXPECTED
            streamed = httpx.post(
                server.url + "/v1/chat/completions", timeout=15, json={**body, "stream": True}
            )
            assert streamed.text.rstrip().endswith("data: [DONE]")
            events = [
                json.loads(line[6:])
                for line in streamed.text.splitlines()
                if line.startswith("data: {")
            ]
            assert (
                "".join(
                    e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"]
                )
                == EXPECTED
            )
