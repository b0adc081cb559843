"""Faithful local emulators of the upstream services: ``llmplex serve --emulate``,
``llmplex emulate``, ``--emulate`` of ``chat`` and ``repl``, benchmarks and tests.

>>> from llmplex.emulators import serve, Script, Fault
>>> from llmplex.emulators.ai2 import Ai2Emulator
>>> with serve(Ai2Emulator(Script("Hi there"))) as emu:
...     ...  # AllenAI.create_async_generator(..., base_url=emu.url)

Which emulator stands in for which provider is in the providers' specs
(:class:`llmplex.providers.spec.ProviderSpec`): a plugin's provider with an emulator is
emulated like the built-in ones. Test helpers and pytest fixtures are in
:mod:`llmplex.testing`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .script import Fault, Script, split_tokens

if TYPE_CHECKING:  # pragma: no cover
    from ..providers.spec import ProviderSpec
    from .emulator import Emulator, RecordedRequest
    from .server import EmulatorServer, serve

__all__ = [
    "EMULATORS",
    "Emulator",
    "EmulatorServer",
    "Fault",
    "RecordedRequest",
    "Script",
    "emulator_specs",
    "get_emulator",
    "serve",
    "split_tokens",
]


def emulator_specs() -> dict[str, ProviderSpec]:
    """Emulator service name (``"allenai"``, ``"openai"``...) -> the spec of the provider
    it is named for (the one whose lower-case name it is, else the first that uses it)."""
    from ..providers import provider_specs

    services: dict[str, ProviderSpec] = {}
    for spec in provider_specs():
        if spec.emulator is None:
            continue
        owner = services.get(spec.emulator_service)
        if owner is None or (
            spec.name.lower() == spec.emulator_service
            and owner.name.lower() != spec.emulator_service
        ):
            services[spec.emulator_service] = spec
    return services


def get_emulator(name: str) -> Callable[[Script | None], Emulator]:
    """The emulator (class or factory) of a service name (``"allenai"``, ``"openai"``...)
    or of a provider name (``"Groq"``: the OpenAI emulator)."""
    services = emulator_specs()
    spec = services.get(name.lower())
    if spec is None:
        from ..providers import find_provider, get_spec

        registered = find_provider(name)
        candidate = get_spec(registered) if registered else None
        if candidate is None or candidate.emulator is None:
            raise KeyError(f"no emulator {name!r}; known: {', '.join(services)}")
        spec = candidate
    return spec.load_emulator()


def __getattr__(name: str) -> Any:
    if name == "EMULATORS":  # service name -> "module:attr" of its emulator
        return {service: spec.emulator for service, spec in emulator_specs().items()}
    if name in ("serve", "EmulatorServer"):
        from . import server

        return getattr(server, name)
    if name in ("Emulator", "RecordedRequest"):
        from . import emulator

        return getattr(emulator, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
