"""Keep-alive connections: the clients' pools and ``ConnectionPool`` for direct provider
calls, seen from the emulators (which TCP connection each request came on, and how many
connections are open right now)."""

from __future__ import annotations

import asyncio
import gc
from contextlib import ExitStack

import pytest

from llmplex import AsyncClient, Client
from llmplex.conversations import MemoryStore
from llmplex.emulators import Script, get_emulator, serve
from llmplex.http import ConnectionPool
from llmplex.providers import OpenAICompatible, OpenAssistant
from llmplex.testing import eventually, wait_until

ANSWER = "Pooled, Привет 😀!"
OA_COOKIES = {"next-auth.session-token": "session-1"}


@pytest.fixture
def emus():
    with ExitStack() as stack:
        yield {
            name: stack.enter_context(serve(get_emulator(name)(Script(ANSWER))))
            for name in ("openai", "openassistant")
        }


def options(emus) -> dict:
    return {
        "OpenAI": {"base_url": emus["openai"].url + "/v1", "api_key": "sk-test"},
        "OpenAssistant": {"base_url": emus["openassistant"].url, "cookies": OA_COOKIES},
    }


def connections(emulator) -> int:
    """How many TCP connections the emulator's recorded requests came on."""
    return len({tuple(request.peer) for request in emulator.requests})


# -- AsyncClient ------------------------------------------------------------------------------


async def test_async_with_client_reuses_one_connection_and_closes_it(emus):
    emu = emus["openai"]
    async with AsyncClient(provider_options=options(emus), store=MemoryStore()) as client:
        for _ in range(3):
            answer = await client.chat.completions.create(model="openai:gpt-4o-mini", messages="Hi")
            assert answer.choices[0].message.content == ANSWER
        stream = await client.chat.completions.create(
            model="openai:gpt-4o-mini", messages="Hi", stream=True
        )
        assert "".join([c.choices[0].delta.content or "" async for c in stream]) == ANSWER
        assert emu.open_connections == 1  # kept alive between calls
    assert len(emu.requests) == 4 and connections(emu) == 1
    await eventually(lambda: emu.open_connections == 0)  # closed with the block


async def test_async_client_without_the_block_opens_a_connection_per_call(emus):
    emu = emus["openai"]
    client = AsyncClient(provider_options=options(emus), store=MemoryStore())
    for _ in range(2):
        await client.chat.completions.create(model="openai:gpt-4o-mini", messages="Hi")
    assert connections(emu) == 2
    await eventually(lambda: emu.open_connections == 0)  # nothing left open


async def test_a_stream_iterated_in_another_task_still_uses_the_clients_pool(emus):
    emu = emus["openai"]
    async with AsyncClient(provider_options=options(emus), store=MemoryStore()) as client:

        async def consume() -> str:
            stream = await client.chat.completions.create(
                model="openai:gpt-4o-mini", messages="Hi", stream=True
            )
            return "".join([c.choices[0].delta.content or "" async for c in stream])

        texts = [await asyncio.create_task(consume()) for _ in range(3)]
    assert texts == [ANSWER] * 3
    assert connections(emu) == 1


async def test_the_upstream_cleanup_reuses_the_pooled_connection(emus):
    emu = emus["openassistant"]
    async with AsyncClient(provider_options=options(emus), store=MemoryStore()) as client:
        for _ in range(2):
            answer = await client.chat.completions.create(
                model="openassistant:OA_SFT_Llama_30B_6", messages="Hi"
            )
            assert answer.choices[0].message.content == ANSWER
    # create chat, prompter message, assistant message, events, DELETE: twice, one socket
    assert [r.method for r in emu.requests].count("DELETE") == 2
    assert connections(emu) == 1


# -- Client (sync) ----------------------------------------------------------------------------


def test_sync_client_keeps_one_connection_until_closed(emus):
    emu = emus["openai"]
    client = Client(provider_options=options(emus), store=MemoryStore())
    for _ in range(2):
        answer = client.chat.completions.create(model="openai:gpt-4o-mini", messages="Hi")
        assert answer.choices[0].message.content == ANSWER
    text = "".join(
        c.choices[0].delta.content or ""
        for c in client.chat.completions.create(
            model="openai:gpt-4o-mini", messages="Hi", stream=True
        )
    )
    assert text == ANSWER
    assert connections(emu) == 1 and emu.open_connections == 1

    client.close()
    wait_until(lambda: emu.open_connections == 0)
    # still usable after close: a connection per call, closed after it
    answer = client.chat.completions.create(model="openai:gpt-4o-mini", messages="Hi")
    assert answer.choices[0].message.content == ANSWER
    assert connections(emu) == 2
    wait_until(lambda: emu.open_connections == 0)
    client.close()  # twice is fine


def test_sync_client_with_block_closes_its_connections(emus):
    emu = emus["openai"]
    with Client(provider_options=options(emus), store=MemoryStore()) as client:
        client.chat.completions.create(model="openai:gpt-4o-mini", messages="Hi")
        assert emu.open_connections == 1
    wait_until(lambda: emu.open_connections == 0)


def test_a_garbage_collected_sync_client_closes_its_connections(emus):
    emu = emus["openai"]
    client = Client(provider_options=options(emus), store=MemoryStore())
    client.chat.completions.create(model="openai:gpt-4o-mini", messages="Hi")
    assert emu.open_connections == 1
    del client
    gc.collect()  # a leaked socket would warn here, and warnings fail the tests
    wait_until(lambda: emu.open_connections == 0)


def test_sync_client_stopping_a_stream_early_keeps_the_pool_usable(emus):
    emu = emus["openassistant"]
    emu.script = Script(ANSWER * 30, delay=0.01)
    with Client(provider_options=options(emus), store=MemoryStore()) as client:
        stream = client.chat.completions.create(
            model="openassistant:OA_SFT_Llama_30B_6", messages="Hi", stream=True
        )
        next(stream)
        stream.close()  # the stream's connection is dropped; the chat is still deleted
        wait_until(lambda: len(emu.requests_to("/api/chat", "DELETE")) == 1)
        emu.script = Script(ANSWER)
        answer = client.chat.completions.create(
            model="openassistant:OA_SFT_Llama_30B_6", messages="Hi"
        )
        assert answer.choices[0].message.content == ANSWER
    wait_until(lambda: emu.open_connections == 0)
    assert emu.open_streams == 0


# -- ConnectionPool for direct provider calls -------------------------------------------------


async def test_direct_provider_calls_share_a_connection_pool(emus):
    emu = emus["openai"]
    base_url = emu.url + "/v1"
    async with ConnectionPool() as pool:
        for _ in range(3):
            text = await OpenAICompatible.create_async(
                "gpt-4o-mini", "Hi", base_url=base_url, api_key="sk-test"
            )
            assert text == ANSWER
        assert emu.open_connections == 1
    assert pool.closed and connections(emu) == 1
    await eventually(lambda: emu.open_connections == 0)

    # after the block, calls open (and close) their own connections again
    await OpenAssistant.create_async(
        "OA_SFT_Llama_30B_6", "Hi", base_url=emus["openassistant"].url, cookies=OA_COOKIES
    )
    await eventually(lambda: emus["openassistant"].open_connections == 0)


def test_a_pool_serves_only_the_loop_that_made_it(emus):
    emu = emus["openai"]
    pool = ConnectionPool()

    async def call() -> str:
        with pool.bind():
            return await OpenAICompatible.create_async(
                "gpt-4o-mini", "Hi", base_url=emu.url + "/v1", api_key="sk-test"
            )

    async def first() -> None:
        assert await call() == ANSWER
        # the second loop below must not touch this loop's connection

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(first())
        assert asyncio.run(call()) == ANSWER  # another loop: its own connection, closed
        assert connections(emu) == 2
        wait_until(lambda: emu.open_connections == 1)  # the first loop's, kept
        loop.run_until_complete(pool.close())
    finally:
        loop.close()
    wait_until(lambda: emu.open_connections == 0)
