"""Every upstream as a local emulator: ``llmplex serve --emulate``, ``llmplex emulate``,
``llmplex chat --emulate`` and ``llmplex repl --emulate``.

This module imports nothing from FastAPI or uvicorn (the emulators run on aiohttp), so it
works on a base install, without the ``[server]`` extra.

:class:`EmulatedServices` starts the emulators of :data:`llmplex.testing.EMULATORS` on
127.0.0.1 and says how to reach them: provider options for an in-process client
(:meth:`~EmulatedServices.provider_options`, with dummy credentials the emulators
accept) or environment variables for another process (:meth:`~EmulatedServices.exports`).
The OpenAI emulator stands in for every OpenAI-compatible provider (OpenAI, Groq,
Ollama...).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..providers import provider_names
from ..providers.endpoints import ENDPOINTS
from ..testing import EMULATORS, Script, get_emulator

__all__ = ["DUMMY_CREDENTIALS", "EMULATED_NOTICE", "EmulatedServices", "emulated_client"]

#: what ``serve --emulate``, ``chat --emulate`` and ``repl --emulate`` say on stderr (and
#: the server in its API description); :data:`llmplex.server.app.EMULATED_NOTICE` is the
#: same text, kept there so that this module needs no FastAPI
EMULATED_NOTICE = "EMULATED: answers come from local emulators, not real services"

#: provider name -> options every emulator accepts in place of real credentials
DUMMY_CREDENTIALS: dict[str, dict[str, Any]] = {
    "AllenAI": {"api_key": "ai2-emulated-token"},  # llmplex.testing.ai2.EMULATED_TOKEN
    "Replicate": {"api_key": "r8_emulated"},
    "OpenAssistant": {"cookies": {"next-auth.session-token": "emulated-session"}},
    "Anthropic": {"api_key": "sk-ant-emulated"},
}
_OPENAI_KEY = "sk-emulated"
_COMPATIBLE = ("OpenAICompatible", *ENDPOINTS)


def demo_script(service: str) -> Script:
    """What an emulator answers in a demo: says where it comes from, streamed slowly
    enough to look like streaming."""
    return Script(f"Hello from the local {service} emulator! This answer is canned: "
                  "llmplex is running offline, no real service was contacted.", delay=0.02)


class EmulatedServices:
    """The named emulators (default: all), served on ``host``.

    ``port`` 0 gives each an ephemeral port; another value gives consecutive ports from
    it, in the order of ``names``. ``script`` (a callable of the service name) makes each
    emulator's default answer.
    """

    def __init__(self, names: Iterable[str] | None = None, *, host: str = "127.0.0.1",
                 port: int = 0, script: Any = demo_script) -> None:
        chosen = list(names) if names else list(EMULATORS)
        unknown = [n for n in chosen if n.lower() not in EMULATORS]
        if unknown:
            raise KeyError(f"no emulator {', '.join(map(repr, unknown))}; "
                           f"known: {', '.join(EMULATORS)}")
        self.names = list(dict.fromkeys(n.lower() for n in chosen))
        self.host = host
        self.port = port
        self._script = script
        self.emulators: dict[str, Any] = {}
        self._servers: list[Any] = []

    def start(self) -> EmulatedServices:
        from ..testing.server import EmulatorServer

        try:
            for index, name in enumerate(self.names):
                emulator = get_emulator(name)(self._script(name))
                server = EmulatorServer(emulator, self.host, self.port + index if self.port else 0)
                server.start()
                self._servers.append(server)
                self.emulators[name] = emulator
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for server in reversed(self._servers):
            server.stop()
        self._servers.clear()

    def __enter__(self) -> EmulatedServices:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def urls(self) -> dict[str, str]:
        """Service name -> base URL of its emulator."""
        return {name: emulator.url for name, emulator in self.emulators.items()}

    def provider_options(self) -> dict[str, dict[str, Any]]:
        """Options pointing every emulated provider at its emulator, with dummy keys."""
        options: dict[str, dict[str, Any]] = {}
        for name, emulator in self.emulators.items():
            if name == "openai":
                for provider in _COMPATIBLE:
                    options[provider] = {"base_url": emulator.url + "/v1", "api_key": _OPENAI_KEY}
                continue
            provider = next(p for p in provider_names() if p.lower() == name)
            options[provider] = {"base_url": emulator.url, **DUMMY_CREDENTIALS.get(provider, {})}
        return options

    def exports(self) -> list[tuple[str, str, str]]:
        """``(service, url, shell line)`` for each emulator: the environment variables that
        point llmplex in another process at it."""
        lines = []
        for name, emulator in self.emulators.items():
            if name == "openai":
                line = (f"export LLMPLEX_OPENAI_BASE_URL={emulator.url}/v1 "
                        f"OPENAI_API_KEY={_OPENAI_KEY}")
                lines.append((name, emulator.url + "/v1", line))
                continue
            provider = next(p for p in provider_names() if p.lower() == name)
            line = f"export LLMPLEX_{provider.upper()}_BASE_URL={emulator.url}"
            if provider == "Replicate":
                line += f" REPLICATE_API_TOKEN={DUMMY_CREDENTIALS['Replicate']['api_key']}"
            elif provider == "AllenAI":
                line += f" AI2_API_KEY={DUMMY_CREDENTIALS['AllenAI']['api_key']}"
            elif provider == "Anthropic":
                line += f" ANTHROPIC_API_KEY={DUMMY_CREDENTIALS['Anthropic']['api_key']}"
            lines.append((name, emulator.url, line))
        return lines


def emulated_client(services: EmulatedServices, **options: Any) -> Any:
    """An :class:`~llmplex.client.AsyncClient` using only ``services`` (every provider,
    also those marked not working, since their emulators work), with an in-memory store
    unless ``store=`` is given."""
    from ..client import AsyncClient
    from ..conversations import MemoryStore
    from ..routing import Router

    options.setdefault("store", MemoryStore())
    options.setdefault("router", Router(include_not_working=True))
    return AsyncClient(provider_options=services.provider_options(), **options)
