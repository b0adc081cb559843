"""The sync bridge: one background loop serving sync callers, even inside a running loop."""

from __future__ import annotations

import asyncio
import threading

import pytest

from llmplex import bridge
from llmplex.providers.base import run_cleanup


async def numbers(n: int, log: list[str], fail_at: int | None = None):
    async def cleanup():  # needs the loop, like an upstream DELETE
        await asyncio.sleep(0.05)
        log.append("cleaned")

    try:
        for i in range(n):
            if i == fail_at:
                raise ValueError(f"failed at {i}")
            await asyncio.sleep(0)
            yield i
    finally:
        # As providers do: shielded, so a cancellation that lands while the generator is
        # already cleaning up cannot cut the cleanup short.
        await run_cleanup(cleanup())


def test_iterate_from_plain_sync_code():
    log: list[str] = []
    assert list(bridge.iterate(lambda: numbers(5, log))) == [0, 1, 2, 3, 4]
    assert log == ["cleaned"]


async def test_iterate_and_run_inside_a_running_event_loop():
    # This test itself runs inside an event loop: asyncio.run() would fail here.
    log: list[str] = []
    assert list(bridge.iterate(lambda: numbers(3, log))) == [0, 1, 2]

    async def answer():
        await asyncio.sleep(0)
        return 42

    assert bridge.run(answer()) == 42
    assert log == ["cleaned"]


def test_early_stop_waits_for_cleanup():
    log: list[str] = []
    stream = bridge.iterate(lambda: numbers(1000, log))
    assert next(stream) == 0
    stream.close()
    assert log == ["cleaned"]  # cleanup finished before close() returned


def test_error_is_raised_in_caller_after_cleanup():
    log: list[str] = []
    got = []
    with pytest.raises(ValueError, match="failed at 2"):
        for item in bridge.iterate(lambda: numbers(5, log, fail_at=2)):
            got.append(item)
    assert got == [0, 1]
    assert log == ["cleaned"]


def test_many_threads_share_one_loop():
    results: dict[int, list[int]] = {}

    def worker(k: int) -> None:
        results[k] = list(bridge.iterate(lambda: numbers(k, [])))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(1, 9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {k: list(range(k)) for k in range(1, 9)}


def test_calling_sync_api_from_the_bridge_loop_is_refused():
    async def nested():
        return list(bridge.iterate(lambda: numbers(1, [])))

    with pytest.raises(RuntimeError, match="own background loop"):
        bridge.run(nested())


def test_close_while_the_generator_is_already_cleaning_up():
    # The pump has read everything and the generator sits in its (shielded) cleanup
    # when close() cancels it: close() still waits for the cleanup to finish.
    import time

    log: list[str] = []
    stream = bridge.iterate(lambda: numbers(2, log))
    assert next(stream) == 0
    time.sleep(0.02)  # both items produced; cleanup (0.05 s) under way
    stream.close()
    assert log == ["cleaned"]
