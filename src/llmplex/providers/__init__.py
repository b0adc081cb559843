"""Providers, one module per upstream service, and the registry that names them.

Provider classes are imported lazily: ``from llmplex.providers import AllenAI`` loads only
``llmplex.providers.allenai`` (and aiohttp), not every provider.
"""

from __future__ import annotations

import difflib
import importlib
from typing import TYPE_CHECKING

from ..errors import InvalidRequestError
from .endpoints import ENDPOINTS

if TYPE_CHECKING:  # pragma: no cover
    from .allenai import AllenAI
    from .anthropic import Anthropic
    from .base import AsyncGeneratorProvider
    from .h2o import H2o
    from .openai_compatible import OpenAICompatible
    from .openassistant import OpenAssistant
    from .replicate import Replicate

__all__ = ["AllenAI", "Anthropic", "OpenAssistant", "H2o", "Replicate", "OpenAICompatible", "get_provider",
           "provider_names", "all_providers", "provider_option_names", "similar_providers",
           "REGISTRY"]

# name -> module holding the class of that name. The registry is data so that listing
# providers does not import them. The named OpenAI-compatible endpoints come last: their
# classes are made from data by that module.
REGISTRY: dict[str, str] = {
    "AllenAI": "llmplex.providers.allenai",
    "OpenAssistant": "llmplex.providers.openassistant",
    "H2o": "llmplex.providers.h2o",
    "Replicate": "llmplex.providers.replicate",
    "Anthropic": "llmplex.providers.anthropic",
    "OpenAICompatible": "llmplex.providers.openai_compatible",
    **{name: "llmplex.providers.openai_compatible" for name in ENDPOINTS},
}


def provider_names() -> list[str]:
    """Names of every registered provider."""
    return list(REGISTRY)


def find_provider(name: str) -> str | None:
    """The registered spelling of provider ``name`` (case-insensitive), or None."""
    key = str(name).lower()
    for registered in REGISTRY:
        if registered.lower() == key:
            return registered
    return None


def _distance(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions, adjacent transpositions)."""
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            cost = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cost = min(cost, previous2[j - 2] + 1)
            current.append(cost)
        previous2, previous = previous, current
    return previous[-1]


def similar_providers(name: str, *, strict: bool = False) -> list[str]:
    """Registered provider names close to ``name``, closest first.

    ``strict`` (used to tell a mistyped ``provider:`` prefix from a model name that holds a
    ``:``, such as Ollama's ``llama3.2:1b``): only names within a small edit distance — one
    edit for names of up to five characters, two for longer ones — and never for names
    shorter than three characters; only the closest of those. Otherwise, when none is that
    close, difflib's looser matches.
    """
    key = str(name).lower()
    if len(key) < 3 and strict:
        return []
    limit = 1 if len(key) <= 5 else 2
    scored = sorted((_distance(key, registered.lower()), registered) for registered in REGISTRY)
    if scored and scored[0][0] <= limit:  # the closest names only
        return [registered for d, registered in scored if d == scored[0][0]]
    if strict:
        return []
    lowered = {registered.lower(): registered for registered in REGISTRY}
    return [lowered[m] for m in difflib.get_close_matches(key, list(lowered), n=3, cutoff=0.7)]


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
    suggestions = similar_providers(name)
    if suggestions:
        raise InvalidRequestError(
            f"unknown provider {name!r} — did you mean {' or '.join(suggestions)}?",
            param="provider", suggestions=suggestions)
    raise InvalidRequestError(
        f"unknown provider {name!r}; known providers: {', '.join(REGISTRY)}",
        param="provider")


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
