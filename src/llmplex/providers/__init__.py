"""Providers, one module per upstream service, and the registry that names them.

Each provider is described by a :class:`~llmplex.providers.spec.ProviderSpec` (data:
name, service, key variables, emulator...). The built-in providers are known statically;
third-party ones come from the ``llmplex.providers`` entry-point group (the built-ins are
registered there too, and are used even when the package metadata is missing or stale).
``LLMPLEX_PLUGINS`` restricts which third-party plugins load: unset, all of them;
``none`` or empty, none; else a comma-separated list of plugin (entry-point) names. A
plugin that fails to load is a :class:`~llmplex.providers.spec.PluginWarning` naming it;
the other providers work.

Provider classes are imported lazily: ``from llmplex.providers import AllenAI`` loads only
``llmplex.providers.allenai`` (and aiohttp), not every provider.
"""

from __future__ import annotations

import difflib
import os
import threading
import warnings
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..errors import InvalidRequestError
from .endpoints import ENDPOINTS
from .spec import PluginWarning, ProviderSpec, load_object

if TYPE_CHECKING:  # pragma: no cover
    from .allenai import AllenAI
    from .anthropic import Anthropic
    from .base import AsyncGeneratorProvider
    from .h2o import H2o
    from .openai_compatible import OpenAICompatible
    from .openassistant import OpenAssistant
    from .replicate import Replicate

__all__ = [
    "BUILTIN_PLUGINS",
    "ENTRY_POINT_GROUP",
    "REGISTRY",
    "AllenAI",
    "Anthropic",
    "H2o",
    "OpenAICompatible",
    "OpenAssistant",
    "PluginWarning",
    "ProviderSpec",
    "Replicate",
    "all_providers",
    "get_provider",
    "get_spec",
    "key_variables",
    "provider_names",
    "provider_option_names",
    "provider_specs",
    "similar_providers",
]

#: the entry-point group plugins register their specs in
ENTRY_POINT_GROUP = "llmplex.providers"
#: the built-in plugins: entry-point name -> its spec(s), as in pyproject.toml (where
#: they are registered too); known here so that they work without package metadata
BUILTIN_PLUGINS: dict[str, str] = {
    "allenai": "llmplex.providers.allenai:SPEC",
    "openassistant": "llmplex.providers.openassistant:SPEC",
    "h2o": "llmplex.providers.h2o:SPEC",
    "replicate": "llmplex.providers.replicate:SPEC",
    "anthropic": "llmplex.providers.anthropic:SPEC",
    "openai_compatible": "llmplex.providers.openai_compatible:SPEC",
    "endpoints": "llmplex.providers.endpoints:SPECS",
}

# built-in provider name -> its plugin. Data, so that listing the built-in providers
# imports none of them. The named OpenAI-compatible endpoints come last.
_BUILTIN_NAMES: dict[str, str] = {
    "AllenAI": "allenai",
    "OpenAssistant": "openassistant",
    "H2o": "h2o",
    "Replicate": "replicate",
    "Anthropic": "anthropic",
    "OpenAICompatible": "openai_compatible",
    **{name: "endpoints" for name in ENDPOINTS},
}

# name -> spec, filled as plugins load (a built-in plugin when one of its names is first
# asked for; the third-party ones all at once, the first time a name is not built in)
_specs: dict[str, ProviderSpec] = {}
_external: dict[str, ProviderSpec] | None = None
_loading = threading.Lock()


def _as_specs(obj: Any) -> list[ProviderSpec]:
    specs = (
        [obj]
        if isinstance(obj, ProviderSpec)
        else list(obj)
        if isinstance(obj, Iterable) and not isinstance(obj, (str, bytes))
        else None
    )
    if not specs or not all(isinstance(s, ProviderSpec) for s in specs):
        raise TypeError(f"not a ProviderSpec or a list of them: {type(obj).__name__}")
    return specs


def _load_builtin(plugin: str) -> None:
    for spec in _as_specs(load_object(BUILTIN_PLUGINS[plugin])):
        _specs.setdefault(spec.name, spec)


def _allowed(environ: Any = None) -> set[str] | None:
    """The third-party plugins ``LLMPLEX_PLUGINS`` allows (None: all)."""
    value = (os.environ if environ is None else environ).get("LLMPLEX_PLUGINS")
    if value is None:
        return None
    names = {n.strip() for n in value.split(",") if n.strip()}
    return set() if names <= {"none"} else names - {"none"}


def _entry_points() -> list[Any]:
    from importlib.metadata import entry_points

    return list(entry_points(group=ENTRY_POINT_GROUP))


def _load_external() -> dict[str, ProviderSpec]:
    """Load the allowed third-party plugins (once); warn once for each that fails."""
    global _external
    if _external is not None:
        return _external
    with _loading:  # once, even when threads (the sync Client's loop...) ask together
        if _external is None:
            _external = _load_plugins()
    return _external


def _load_plugins() -> dict[str, ProviderSpec]:
    loaded: dict[str, ProviderSpec] = {}
    allowed = _allowed()
    if allowed is not None and not allowed:
        return loaded
    taken = {n.lower() for n in _BUILTIN_NAMES}
    seen: set[str] = set()
    for ep in _entry_points():
        if BUILTIN_PLUGINS.get(ep.name) == ep.value:
            continue  # a built-in, registered by llmplex's own metadata
        seen.add(ep.name)
        if allowed is not None and ep.name not in allowed:
            continue
        try:
            specs = _as_specs(ep.load())
            clash = [s.name for s in specs if s.name.lower() in taken]
            if clash:
                raise ValueError(f"provider name {', '.join(clash)} is already taken")
        except Exception as exc:  # a broken plugin must not break llmplex
            warnings.warn(
                PluginWarning(
                    f"llmplex plugin {ep.name!r} ({ep.value}) not loaded: "
                    f"{type(exc).__name__}: {exc}"
                ),
                stacklevel=4,
            )
            continue
        for spec in specs:
            taken.add(spec.name.lower())
            loaded[spec.name] = spec
    for name in sorted((allowed or set()) - seen):
        warnings.warn(
            PluginWarning(
                f"LLMPLEX_PLUGINS names plugin {name!r}, which is not installed "
                f"(installed: {', '.join(sorted(seen)) or 'none'})"
            ),
            stacklevel=4,
        )
    return loaded


def _registry() -> dict[str, str]:
    names = dict(_BUILTIN_NAMES)
    names.update({name: "" for name in _load_external()})
    return names


def provider_names() -> list[str]:
    """Names of every registered provider (built in, then from plugins)."""
    return list(_registry())


def __getattr__(name: str) -> Any:
    if name == "REGISTRY":  # name -> built-in plugin ("" for a third-party one)
        return _registry()
    if name in _BUILTIN_NAMES or name in _load_external():
        return get_provider(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: lower-case built-in name -> its spelling (the client looks one up on every request)
_BUILTIN_LOWER: dict[str, str] = {}
for _name in _BUILTIN_NAMES:
    _BUILTIN_LOWER.setdefault(_name.lower(), _name)  # the first spelling, as a scan finds
del _name


def find_provider(name: str) -> str | None:
    """The registered spelling of provider ``name`` (case-insensitive), or None."""
    key = str(name).lower()
    registered = _BUILTIN_LOWER.get(key)
    if registered is not None:
        return registered
    for registered in _load_external():
        if registered.lower() == key:
            return registered
    return None


def get_spec(name: str) -> ProviderSpec:
    """The spec of provider ``name`` (case-insensitive; an :class:`InvalidRequestError`
    with suggestions for an unknown one)."""
    registered = find_provider(name)
    if registered is None:
        _unknown(name)
    assert registered is not None
    spec = _specs.get(registered) or _load_external().get(registered)
    if spec is None:
        _load_builtin(_BUILTIN_NAMES[registered])
        spec = _specs[registered]
    return spec


def provider_specs() -> list[ProviderSpec]:
    """Every registered provider's spec (imports the built-in provider modules)."""
    return [get_spec(name) for name in provider_names()]


def key_variables(name: str) -> tuple[str, ...]:
    """The environment variables provider ``name`` reads its key from (none if unknown)."""
    registered = find_provider(name)
    return get_spec(registered).key_env if registered else ()


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
    scored = sorted(
        (_distance(key, registered.lower()), registered) for registered in provider_names()
    )
    if scored and scored[0][0] <= limit:  # the closest names only
        return [registered for d, registered in scored if d == scored[0][0]]
    if strict:
        return []
    lowered = {registered.lower(): registered for registered in provider_names()}
    return [lowered[m] for m in difflib.get_close_matches(key, list(lowered), n=3, cutoff=0.7)]


# lower-case name -> the class, filled as classes are first asked for: the client looks a
# provider up on every request, so the lookup must not be a scan with an import call.
_loaded: dict[str, type[AsyncGeneratorProvider]] = {}


def _unknown(name: str) -> None:
    suggestions = similar_providers(name)
    if suggestions:
        raise InvalidRequestError(
            f"unknown provider {name!r} — did you mean {' or '.join(suggestions)}?",
            param="provider",
            suggestions=suggestions,
        )
    raise InvalidRequestError(
        f"unknown provider {name!r}; known providers: {', '.join(provider_names())}",
        param="provider",
    )


def get_provider(name: str) -> type[AsyncGeneratorProvider]:
    """The provider class called ``name`` (case-insensitive)."""
    key = str(name).lower()
    cls = _loaded.get(key)
    if cls is not None:
        return cls
    cls = _loaded[key] = get_spec(name).load_class()
    return cls


def all_providers() -> list[type[AsyncGeneratorProvider]]:
    """Every registered provider class (imports them)."""
    return [get_provider(name) for name in provider_names()]


_options: tuple[tuple[str, ...], frozenset[str]] | None = None


def provider_option_names() -> frozenset[str]:
    """Every option some registered provider takes (imports them, once)."""
    global _options
    key = tuple(provider_names())
    if _options is None or _options[0] != key:
        names: set[str] = set()
        for cls in all_providers():
            names |= cls.accepted_options()
        _options = (key, frozenset(names))
    return _options[1]
