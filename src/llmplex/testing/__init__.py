"""Test helpers for code that uses llmplex: emulator scripts and servers, waiting helpers,
a misbehaving upstream (:mod:`llmplex.testing.hostile`) and pytest fixtures.

>>> from llmplex.testing import serve, Script, Fault
>>> from llmplex.emulators.ai2 import Ai2Emulator
>>> with serve(Ai2Emulator(Script("Hi there"))) as emu:
...     ...  # AllenAI.create_async_generator(..., base_url=emu.url)

The emulators themselves are :mod:`llmplex.emulators` (``Script``, ``Fault`` and
``serve`` are re-exported here). The pytest fixtures (``ai2_emulator``,
``openai_emulator``, ..., ``llmplex_emulator``) are an opt-in pytest plugin: add
``pytest_plugins = ["llmplex.testing.pytest_plugin"]`` to your ``conftest.py`` or run
``pytest -p llmplex.testing.pytest_plugin``.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

from ..emulators.script import Fault, Script, split_tokens
from .waiting import cancel_mid_stream, eventually, interrupt, read_exports, wait_until

if TYPE_CHECKING:  # pragma: no cover
    from ..emulators.emulator import Emulator, RecordedRequest
    from ..emulators.server import EmulatorServer, serve

__all__ = [
    "Emulator",
    "EmulatorServer",
    "Fault",
    "RecordedRequest",
    "Script",
    "cancel_mid_stream",
    "eventually",
    "interrupt",
    "read_exports",
    "serve",
    "split_tokens",
    "wait_until",
]

# names that moved to llmplex.emulators: still importable from here, with a warning
_MOVED = {
    "EMULATORS": "llmplex.emulators",
    "get_emulator": "llmplex.emulators",
    "Ai2Emulator": "llmplex.emulators.ai2",
    "Ai2V4Emulator": "llmplex.emulators.ai2_v4",
    "AnthropicEmulator": "llmplex.emulators.anthropic",
    "H2oEmulator": "llmplex.emulators.h2o",
    "OpenAIEmulator": "llmplex.emulators.openai",
    "OpenAssistantEmulator": "llmplex.emulators.openassistant",
    "ReplicateEmulator": "llmplex.emulators.replicate",
}


def __getattr__(name: str) -> Any:
    import importlib

    if name in ("serve", "EmulatorServer", "Emulator", "RecordedRequest"):
        return getattr(importlib.import_module("llmplex.emulators"), name)
    if name in _MOVED:
        warnings.warn(
            f"llmplex.testing.{name} is deprecated: use from {_MOVED[name]} import {name}",
            DeprecationWarning,
            stacklevel=2,
        )
        value = getattr(importlib.import_module(_MOVED[name]), name)
        globals()[name] = value  # warned once: ``from ... import`` asks twice
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
