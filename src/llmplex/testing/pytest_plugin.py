"""Pytest fixtures serving each emulator on 127.0.0.1: an opt-in pytest plugin.

Enable it in a ``conftest.py`` with ``pytest_plugins = ["llmplex.testing.pytest_plugin"]``
or on the command line with ``-p llmplex.testing.pytest_plugin`` (it is not loaded into
every pytest run of an environment that has llmplex installed).

Each fixture yields a fresh emulator with ``.url`` set; set ``.script`` or ``push()``
scripts to shape its answers, read ``.requests`` to see what it received.
``llmplex_emulator`` serves the emulator of any provider, a plugin's too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest

from ..emulators import get_emulator
from ..emulators.emulator import Emulator
from ..emulators.script import Script
from ..emulators.server import serve


def _served(name: str) -> Iterator[Emulator]:
    with serve(get_emulator(name)(None)) as emulator:
        yield emulator


@pytest.fixture
def llmplex_emulator() -> Iterator[Callable[..., Emulator]]:
    """Serve the emulator of a provider or service by name, e.g.
    ``llmplex_emulator("Groq")`` (the OpenAI emulator) or ``llmplex_emulator("Echo",
    Script("hi"))``; stopped after the test."""
    with ExitStack() as stack:

        def start(name: str, script: Script | None = None) -> Emulator:
            return stack.enter_context(serve(get_emulator(name)(script)))

        yield start


@pytest.fixture
def ai2_emulator() -> Iterator[Emulator]:
    """The Ai2 Playground (``AllenAI``) emulator."""
    yield from _served("allenai")


@pytest.fixture
def ai2_v4_emulator() -> Iterator[Emulator]:
    """The emulator of the Ai2 Playground's retired v4 API (``api_version="v4"``)."""
    from ..emulators.ai2_v4 import Ai2V4Emulator

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
