"""The plugin's own tests, against its emulator (run with llmplex's opt-in pytest plugin:
``pytest -p llmplex.testing.pytest_plugin tests``)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from llmplex import AsyncClient
from llmplex.conversations import MemoryStore
from llmplex.emulators import Emulator, Script
from llmplex.errors import MissingAuthError

pytestmark = pytest.mark.asyncio


async def test_echo_by_name(llmplex_emulator: Callable[..., Emulator]) -> None:
    emu = llmplex_emulator("Echo")
    async with AsyncClient(
        provider_options={"Echo": {"base_url": emu.url, "api_key": "echo-emulated-key"}},
        store=MemoryStore(),
    ) as client:
        answer = await client.chat.completions.create(
            model="echo:loud", messages=[{"role": "user", "content": "hello there"}]
        )
    assert answer.choices[0].message.content == "HELLO THERE"
    assert answer.provider == "Echo"
    assert emu.requests[-1].json["model"] == "echo-loud"


async def test_scripted_and_refused(llmplex_emulator: Callable[..., Emulator]) -> None:
    emu = llmplex_emulator("echo", Script("one two three"))
    from llmplex_echo.provider import Echo

    text = await Echo.create_async(
        "echo-1",
        [{"role": "user", "content": "x"}],
        base_url=emu.url,
        api_key="echo-emulated-key",
        max_words=2,
    )
    assert text == "one two"  # two words: the answer was cut at max_words
    with pytest.raises(MissingAuthError):
        await Echo.create_async(
            "echo-1", [{"role": "user", "content": "x"}], base_url=emu.url, api_key="wrong"
        )
