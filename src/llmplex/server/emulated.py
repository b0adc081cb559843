"""Every upstream as a local emulator: ``llmplex serve --emulate``, ``llmplex emulate``,
``llmplex chat --emulate`` and ``llmplex repl --emulate``.

This module imports nothing from FastAPI or uvicorn (the emulators run on aiohttp), so it
works on a base install, without the ``[server]`` extra.

:class:`EmulatedServices` starts the emulators of :mod:`llmplex.emulators` (one per
service named in the providers' specs, plugins' included) on 127.0.0.1 and says how to
reach them: provider options for an in-process client
(:meth:`~EmulatedServices.provider_options`, with the dummy credentials of each spec) or
environment variables for another process (:meth:`~EmulatedServices.exports`). The
OpenAI emulator stands in for every OpenAI-compatible provider (OpenAI, Groq, Ollama...).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..emulators import Script, emulator_specs
from ..providers import provider_specs

__all__ = ["EMULATED_NOTICE", "EmulatedServices", "dummy_credentials", "emulated_client"]

#: what ``serve --emulate``, ``chat --emulate`` and ``repl --emulate`` say on stderr (and
#: the server in its API description); :data:`llmplex.server.app.EMULATED_NOTICE` is the
#: same text, kept there so that this module needs no FastAPI
EMULATED_NOTICE = "EMULATED: answers come from local emulators, not real services"


def dummy_credentials() -> dict[str, dict[str, Any]]:
    """Provider name -> the options its emulator accepts in place of real credentials
    (each spec's ``emulator_options``)."""
    return {
        s.name: _copy(s.emulator_options)
        for s in provider_specs()
        if s.emulator and s.emulator_options
    }


def __getattr__(name: str) -> Any:
    if name == "DUMMY_CREDENTIALS":  # the former constant, now read from the specs
        return dummy_credentials()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def demo_script(service: str) -> Script:
    """What an emulator answers in a demo: says where it comes from, streamed slowly
    enough to look like streaming."""
    return Script(
        f"Hello from the local {service} emulator! This answer is canned: "
        "llmplex is running offline, no real service was contacted.",
        delay=0.02,
    )


class EmulatedServices:
    """The named emulators (default: all), served on ``host``.

    ``port`` 0 gives each an ephemeral port; another value gives consecutive ports from
    it, in the order of ``names``. ``script`` (a callable of the service name) makes each
    emulator's default answer.
    """

    def __init__(
        self,
        names: Iterable[str] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        script: Any = demo_script,
    ) -> None:
        self.services = emulator_specs()  # service -> the spec it is named for
        chosen = list(names) if names else list(self.services)
        unknown = [n for n in chosen if n.lower() not in self.services]
        if unknown:
            raise KeyError(
                f"no emulator {', '.join(map(repr, unknown))}; known: {', '.join(self.services)}"
            )
        self.names = list(dict.fromkeys(n.lower() for n in chosen))
        self.host = host
        self.port = port
        self._script = script
        self.emulators: dict[str, Any] = {}
        self._servers: list[Any] = []

    def start(self) -> EmulatedServices:
        from ..emulators.server import EmulatorServer

        try:
            for index, name in enumerate(self.names):
                emulator = self.services[name].load_emulator()(self._script(name))
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
        for spec in provider_specs():
            emulator = self.emulators.get(spec.emulator_service) if spec.emulator else None
            if emulator is not None:
                options[spec.name] = {
                    "base_url": emulator.url + spec.emulator_path,
                    **_copy(spec.emulator_options),
                }
        return options

    def exports(self) -> list[tuple[str, str, str]]:
        """``(service, url, shell line)`` for each emulator: the environment variables that
        point llmplex in another process at it (its spec's base-URL and key variables)."""
        lines = []
        for name, emulator in self.emulators.items():
            spec = self.services[name]
            env = spec.emulated_env(emulator.url)
            line = "export " + " ".join(f"{k}={v}" for k, v in env.items())
            lines.append((name, emulator.url + spec.emulator_path, line))
        return lines

    def config_hints(self) -> dict[str, dict[str, Any]]:
        """Service -> the dummy options no environment variable carries (OpenAssistant's
        session cookie...), to put in ``[providers.<name>]`` of config.toml instead."""
        hints: dict[str, dict[str, Any]] = {}
        for name in self.emulators:
            spec = self.services[name]
            rest = {
                k: v
                for k, v in spec.emulator_options.items()
                if not (k == "api_key" and spec.key_env)
            }
            if rest:
                hints[name] = {"provider": spec.name, **rest}
        return hints


def _copy(options: Mapping[str, Any]) -> dict[str, Any]:
    # a spec's options are read-only and shared: each client gets its own (nested) copy
    return {k: dict(v) if isinstance(v, Mapping) else v for k, v in options.items()}


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
