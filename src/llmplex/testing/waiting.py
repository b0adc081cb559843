"""Waiting for what an emulator sees: a closed stream, a DELETE, a dropped connection.

The emulators run in a thread of their own, so a client's cleanup reaches them a moment
after the client returns. Tests poll for it, with a deadline, and fail saying what they
waited for.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

__all__ = ["eventually", "wait_until"]


async def eventually(predicate: Callable[[], Any], timeout: float = 5.0,
                     message: str = "") -> None:
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
