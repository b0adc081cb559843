"""What the registry knows of a provider without importing it: its :class:`ProviderSpec`.

Every provider, built in or from a plugin, is described by one spec: its name, where its
service is, which environment variables hold its key, what it can do, its models, its
class and its local emulator (as ``"module:attr"`` strings, imported when first used) and
the dummy credentials that emulator accepts. Config (``[providers.<name>]``), routing,
``llmplex providers``, the server and ``--emulate`` read the spec; nothing else in llmplex
names a provider.

A plugin is a package with an entry point in the ``llmplex.providers`` group whose object
is a spec (or a sequence of specs)::

    [project.entry-points."llmplex.providers"]
    echo = "llmplex_echo.spec:SPEC"

This module imports nothing heavy: a plugin's spec module should not either (keep the
class and the emulator in other modules, named by the strings).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ..capabilities import Capabilities

if TYPE_CHECKING:  # pragma: no cover
    from ..emulators.emulator import Emulator
    from ..emulators.script import Script
    from .base import AsyncGeneratorProvider

__all__ = ["PluginWarning", "ProviderSpec", "load_object"]

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
_REFERENCE = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*\Z")
_EMPTY: Mapping[str, Any] = MappingProxyType({})


class PluginWarning(UserWarning):
    """A provider plugin could not be used (it failed to import, its spec is invalid, its
    name is taken, or ``LLMPLEX_PLUGINS`` names a plugin that is not installed). The other
    providers work."""


def load_object(reference: str) -> Any:
    """The object a ``"module:attr"`` (``attr`` may be dotted) string names."""
    module, _, attr = reference.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


@dataclass(frozen=True)
class ProviderSpec:
    """One provider's facts, as data.

    ``name`` is the provider's name (``provider="Echo"``, ``"echo:model"``,
    ``[providers.Echo]``, ``LLMPLEX_ECHO_BASE_URL``) and the class's name. ``provider`` and
    ``emulator`` are ``"module:attr"`` references, imported on first use; ``emulator`` is
    called with a :class:`~llmplex.emulators.Script` (or ``None``) and returns an
    :class:`~llmplex.emulators.Emulator`. ``emulator_service`` names the emulator in
    ``llmplex emulate`` (default: the lower-case name; specs sharing one emulator give the
    same service, as every OpenAI-compatible provider shares ``"openai"``).
    ``emulator_path`` is appended to the emulator's URL to make the provider's
    ``base_url``; ``emulator_options`` are the dummy credentials (provider options) the
    emulator accepts, and ``emulator_env`` the extra environment variables another
    process needs besides ``LLMPLEX_<NAME>_BASE_URL`` and the key variable.
    """

    name: str
    provider: str
    label: str = ""
    base_url: str = ""
    #: environment variables holding the key, the first set one wins
    key_env: tuple[str, ...] = ()
    capabilities: Capabilities | None = None
    models: tuple[str, ...] = ()
    aliases: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    emulator: str | None = None
    emulator_service: str = ""
    emulator_path: str = ""
    emulator_options: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    emulator_env: Mapping[str, str] = field(default_factory=lambda: _EMPTY)

    def __post_init__(self) -> None:
        # Checked here, so that a plugin's mistake is reported when it loads, naming it.
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ValueError(f"provider name {self.name!r} is not a name (letters, digits, _)")
        for label, ref in (("provider", self.provider), ("emulator", self.emulator)):
            if ref is not None and (not isinstance(ref, str) or not _REFERENCE.match(ref)):
                raise ValueError(
                    f"{self.name}: {label} must be a 'module:attr' string, not {ref!r}"
                )
        key_env = (self.key_env,) if isinstance(self.key_env, str) else tuple(self.key_env)
        if not all(isinstance(v, str) and v for v in key_env):
            raise ValueError(f"{self.name}: key_env must be environment variable names")
        object.__setattr__(self, "key_env", key_env)
        object.__setattr__(self, "models", tuple(self.models))
        if self.capabilities is not None and not isinstance(self.capabilities, Capabilities):
            raise TypeError(f"{self.name}: capabilities must be a llmplex Capabilities")
        # read-only copies: a spec is shared by every user of the registry
        for name in ("aliases", "emulator_options", "emulator_env"):
            value = getattr(self, name)
            if not isinstance(value, Mapping):
                raise TypeError(f"{self.name}: {name} must be a mapping")
            object.__setattr__(self, name, MappingProxyType(dict(value)))
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in self.emulator_env.items()):
            raise ValueError(f"{self.name}: emulator_env must map names to strings")
        object.__setattr__(self, "emulator_service", (self.emulator_service or self.name).lower())

    def __hash__(self) -> int:
        return hash((self.name, self.provider))

    @property
    def base_url_env(self) -> str:
        """The environment variable that overrides the base URL."""
        return f"LLMPLEX_{self.name.upper()}_BASE_URL"

    def load_class(self) -> type[AsyncGeneratorProvider]:
        """Import the provider class (a :class:`TypeError` if it is not one, or not named
        like the spec)."""
        from .base import AsyncGeneratorProvider

        cls = load_object(self.provider)
        if not (isinstance(cls, type) and issubclass(cls, AsyncGeneratorProvider)):
            raise TypeError(f"{self.provider} is not a provider class")
        if cls.get_name() != self.name:
            raise TypeError(f"{self.provider} is named {cls.get_name()!r}, its spec {self.name!r}")
        return cls

    def load_emulator(self) -> Callable[[Script | None], Emulator]:
        """The emulator factory (a :class:`LookupError` if the provider has none)."""
        if self.emulator is None:
            raise LookupError(f"{self.name} has no emulator")
        factory: Callable[[Script | None], Emulator] = load_object(self.emulator)
        return factory

    def emulated_env(self, url: str) -> dict[str, str]:
        """The environment variables pointing another process's llmplex at an emulator of
        this provider served at ``url``, with its dummy key."""
        env = {self.base_url_env: url + self.emulator_path}
        key = self.emulator_options.get("api_key")
        if isinstance(key, str) and self.key_env:
            env[self.key_env[0]] = key
        env.update(self.emulator_env)
        return env
