"""Legacy module-level provider interfaces, kept for code written against them.

Each submodule exposes the old attributes (``url``, ``model``, ``models``,
``supports_stream``, ``needs_auth``, ``params``) and a synchronous generator
``_create_completion(model, messages, stream, **kwargs)``, built on the same async
providers, HTTP session and decoders as the rest of llmplex.

>>> from llmplex.providers.legacy import h2o
>>> for token in h2o._create_completion("falcon-7b", messages, stream=True): ...
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["h2o"]


def __getattr__(name: str) -> ModuleType:
    # Lazy: importing the package must not load aiohttp.
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
