"""Serve an emulator on 127.0.0.1 from a background thread.

``with serve(Ai2Emulator()) as emulator: ...`` starts it on an ephemeral port, sets
``emulator.url`` (e.g. ``http://127.0.0.1:40123``) and stops it on exit. The server runs
on its own event loop in its own thread, so it serves sync code, async tests (whatever
their loop) and subprocesses alike, and a stalled answer never blocks the caller.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar

from aiohttp import web

from .emulator import Emulator

__all__ = ["EmulatorServer", "serve"]

E = TypeVar("E", bound=Emulator)


class EmulatorServer:
    """One emulator listening on ``host:port`` (port 0: an ephemeral one)."""

    def __init__(self, emulator: Emulator, host: str = "127.0.0.1", port: int = 0) -> None:
        self.emulator = emulator
        self.host = host
        self.port = port
        self.url: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    def start(self) -> str:
        """Start listening; return the base URL."""
        loop = self._loop = asyncio.new_event_loop()
        started = threading.Event()
        failure: list[BaseException] = []

        def main() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._start())
            except BaseException as exc:  # reported to the starting thread
                failure.append(exc)
                started.set()
                return
            started.set()
            loop.run_forever()

        self._thread = threading.Thread(
            target=main, name=f"emulator-{self.emulator.name}", daemon=True
        )
        self._thread.start()
        started.wait()
        if failure:
            raise failure[0]
        assert self.url is not None  # set by _start(), which succeeded
        return self.url

    async def _start(self) -> None:
        # shutdown_timeout: stalled handlers must not hold up stop().
        self._runner = web.AppRunner(self.emulator.app(), access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]  # the socket of our one site
        self.url = f"http://{self.host}:{self.port}"
        self.emulator.url = self.url
        server = self._runner.server
        self.emulator._connections = lambda: len(server.connections) if server else 0

    async def _shutdown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        # Handlers still sleeping in a stall fault: end them so the loop closes clean.
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def stop(self) -> None:
        loop = self._loop
        if loop is None or self._thread is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
        try:
            future.result(timeout=10)
        except Exception:  # pragma: no cover - best effort on shutdown
            pass
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(timeout=10)
        loop.close()
        self._loop = None

    def __enter__(self) -> EmulatorServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@contextmanager
def serve(emulator: E, host: str = "127.0.0.1", port: int = 0) -> Iterator[E]:
    """Serve ``emulator`` for the duration of the block; yields it with ``.url`` set."""
    server = EmulatorServer(emulator, host, port)
    server.start()
    try:
        yield emulator
    finally:
        server.stop()
