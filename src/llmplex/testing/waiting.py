"""Waiting for what an emulator sees (a closed stream, a DELETE, a dropped connection),
and ending what a test started (a stream it cancels, a process it interrupts).

The emulators run in a thread of their own, so a client's cleanup reaches them a moment
after the client returns. Tests poll for it, with a deadline, and fail saying what they
waited for.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

__all__ = ["eventually", "wait_until", "cancel_mid_stream", "interrupt", "read_exports"]


async def eventually(predicate: Callable[[], Any], timeout: float = 5.0, message: str = "") -> None:
    """Wait (in the running loop) until ``predicate()`` is true; ``AssertionError`` when
    it is not within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(message or f"not reached within {timeout} s")
        await asyncio.sleep(0.01)


def wait_until(predicate: Callable[[], Any], timeout: float = 5.0, message: str = "") -> None:
    """The same for synchronous code (blocks the calling thread)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(message or f"not reached within {timeout} s")
        time.sleep(0.01)


async def cancel_mid_stream(
    stream: AsyncIterator[Any], *, first_within: float = 5.0, cancels: int = 1
) -> None:
    """Consume ``stream`` in a task, as a caller would, and cancel that task once the first
    item has arrived: ``cancels`` times, a loop turn apart (the second lands while the
    first one's cleanup runs). Returns once the task has ended, cleanup included.

    ``TimeoutError`` if no item comes within ``first_within`` seconds; ``AssertionError``
    if the task ends any other way than cancelled."""
    first = asyncio.Event()

    async def consume() -> None:
        async for _ in stream:
            first.set()

    task = asyncio.create_task(consume())
    try:
        await asyncio.wait_for(first.wait(), first_within)
    except BaseException:
        task.cancel()
        raise
    for turn in range(cancels):
        if turn:
            await asyncio.sleep(0)
        task.cancel()
    await asyncio.wait([task])
    if not task.cancelled():
        raise AssertionError(f"the consumer was not cancelled: {task.exception()!r}")


def interrupt(process: subprocess.Popen[Any], timeout: float = 15.0) -> int:
    """Stop ``process`` as Ctrl-C would (SIGINT), wait for it and close its pipes; its exit
    code. Killed, and ``subprocess.TimeoutExpired`` raised, if it outlives ``timeout``."""
    process.send_signal(signal.SIGINT)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise
    finally:
        for pipe in (process.stdin, process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()


def read_exports(process: subprocess.Popen[str], timeout: float = 30.0) -> dict[str, str]:
    """The environment variables a running ``llmplex emulate`` prints (its ``export``
    lines, read from its stdout until "Emulators running" or ``timeout`` seconds)."""
    exports: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    assert process.stdout is not None, "start the process with stdout=subprocess.PIPE"
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line or line.startswith("Emulators running"):
            break
        if line.strip().startswith("export "):
            for pair in line.split()[1:]:
                name, _, value = pair.partition("=")
                exports[name] = value
    return exports
