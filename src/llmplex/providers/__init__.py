"""Providers, one module per upstream service, and the registry that names them.

Provider classes are imported lazily: ``from llmplex.providers import AllenAI`` loads only
``llmplex.providers.allenai`` (and aiohttp), not every provider.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ..errors import InvalidRequestError
from .endpoints import ENDPOINTS

if TYPE_CHECKING:  # pragma: no cover
    from .allenai import AllenAI
    from .base import AsyncGeneratorProvider
    from .h2o import H2o
    from .openai_compatible import OpenAICompatible
    from .openassistant import OpenAssistant
    from .replicate import Replicate

__all__ = ["AllenAI", "OpenAssistant", "H2o", "Replicate", "OpenAICompatible", "get_provider",
           "provider_names", "all_providers", "provider_option_names", "REGISTRY"]

# name -> module holding the class of that name. The registry is data so that listing
# providers does not import them. The named OpenAI-compatible endpoints come last: their
# classes are made from data by that module.
REGISTRY: dict[str, str] = {
    "AllenAI": "llmplex.providers.allenai",
    "OpenAssistant": "llmplex.providers.openassistant",
    "H2o": "llmplex.providers.h2o",
    "Replicate": "llmplex.providers.replicate",
    "OpenAICompatible": "llmplex.providers.openai_compatible",
    **{name: "llmplex.providers.openai_compatible" for name in ENDPOINTS},
}


def provider_names() -> list[str]:
    """Names of every registered provider."""
    return list(REGISTRY)


# lower-case name -> the class, filled as classes are first asked for: the client looks a
# provider up on every request, so the lookup must not be a scan with an import call.
_loaded: dict[str, type[AsyncGeneratorProvider]] = {}


def get_provider(name: str) -> type[AsyncGeneratorProvider]:
    """The provider class called ``name`` (case-insensitive)."""
    key = str(name).lower()
    cls = _loaded.get(key)
    if cls is not None:
        return cls
    for registered, module in REGISTRY.items():
        if registered.lower() == key:
            cls = _loaded[key] = getattr(importlib.import_module(module), registered)
            return cls
    raise InvalidRequestError(
        f"unknown provider {name!r}; known providers: {', '.join(REGISTRY)}"
    )


def all_providers() -> list[type[AsyncGeneratorProvider]]:
    """Every registered provider class (imports them)."""
    return [get_provider(name) for name in REGISTRY]


_options: tuple[tuple[str, ...], frozenset[str]] | None = None


def provider_option_names() -> frozenset[str]:
    """Every option some registered provider takes (imports them, once)."""
    global _options
    key = tuple(REGISTRY)
    if _options is None or _options[0] != key:
        names: set[str] = set()
        for cls in all_providers():
            names |= cls.accepted_options()
        _options = (key, frozenset(names))
    return _options[1]


def __getattr__(name: str):
    if name in REGISTRY:
        return get_provider(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
