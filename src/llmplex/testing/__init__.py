"""Faithful local emulators of every upstream service, for tests, benchmarks and demos.

>>> from llmplex.testing import serve, Script, Fault
>>> from llmplex.testing.ai2 import Ai2Emulator
>>> with serve(Ai2Emulator(Script("Hi there"))) as emu:
...     ...  # AllenAI.create_async_generator(..., base_url=emu.url)

The same emulators are served by ``llmplex emulate`` and used by ``bench/``. Pytest
fixtures (``ai2_emulator``, ``replicate_emulator``, ...) come with the package's pytest
plugin (:mod:`llmplex.testing.pytest_plugin`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .script import Fault, Script, split_tokens
from .waiting import cancel_mid_stream, eventually, interrupt, read_exports, wait_until

if TYPE_CHECKING:  # pragma: no cover
    from .emulator import Emulator, RecordedRequest
    from .server import EmulatorServer, serve

__all__ = ["Script", "Fault", "split_tokens", "serve", "EmulatorServer", "Emulator",
           "RecordedRequest", "EMULATORS", "get_emulator", "eventually", "wait_until",
           "cancel_mid_stream", "interrupt", "read_exports"]

# service name -> "module:Class"; service names match the lower-case provider names.
EMULATORS: dict[str, str] = {
    "allenai": "llmplex.testing.ai2:Ai2Emulator",
    "replicate": "llmplex.testing.replicate:ReplicateEmulator",
    "openassistant": "llmplex.testing.openassistant:OpenAssistantEmulator",
    "h2o": "llmplex.testing.h2o:H2oEmulator",
    "openai": "llmplex.testing.openai:OpenAIEmulator",
    "anthropic": "llmplex.testing.anthropic:AnthropicEmulator",
}


def get_emulator(name: str) -> type[Emulator]:
    """The emulator class for a service name (``"allenai"``, ``"replicate"``, ...)."""
    try:
        module, cls = EMULATORS[name.lower()].split(":")
    except KeyError:
        raise KeyError(f"no emulator {name!r}; known: {', '.join(EMULATORS)}") from None
    return getattr(importlib.import_module(module), cls)


def __getattr__(name: str) -> Any:
    if name in ("serve", "EmulatorServer"):
        from . import server

        return getattr(server, name)
    if name in ("Emulator", "RecordedRequest"):
        from . import emulator

        return getattr(emulator, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
