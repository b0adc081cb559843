"""Pytest fixtures serving each emulator on 127.0.0.1 (registered as a pytest plugin).

Each fixture yields a fresh emulator with ``.url`` set; set ``.script`` or ``push()``
scripts to shape its answers, read ``.requests`` to see what it received.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from . import get_emulator
from .emulator import Emulator
from .server import serve


def _served(name: str) -> Iterator[Emulator]:
    with serve(get_emulator(name)()) as emulator:
        yield emulator


@pytest.fixture
def ai2_emulator() -> Iterator[Emulator]:
    """The Ai2 Playground (``AllenAI``) emulator."""
    yield from _served("allenai")


@pytest.fixture
def ai2_v4_emulator() -> Iterator[Emulator]:
    """The emulator of the Ai2 Playground's retired v4 API (``api_version="v4"``)."""
    from .ai2_v4 import Ai2V4Emulator

    with serve(Ai2V4Emulator()) as emulator:
        yield emulator


@pytest.fixture
def replicate_emulator() -> Iterator[Emulator]:
    """The Replicate emulator (predictions API + SSE stream host)."""
    yield from _served("replicate")


@pytest.fixture
def openassistant_emulator() -> Iterator[Emulator]:
    """The OpenAssistant emulator."""
    yield from _served("openassistant")


@pytest.fixture
def h2o_emulator() -> Iterator[Emulator]:
    """The H2O gpt-gm (chat-ui + TGI) emulator."""
    yield from _served("h2o")


@pytest.fixture
def openai_emulator() -> Iterator[Emulator]:
    """The OpenAI-compatible chat completions emulator (serves ``/v1``)."""
    yield from _served("openai")


@pytest.fixture
def anthropic_emulator() -> Iterator[Emulator]:
    """The Anthropic Messages API emulator (serves ``/v1/messages``)."""
    yield from _served("anthropic")
