"""The sync bridge: run llmplex's async code for synchronous callers.

All sync calls run on one long-lived event loop in a daemon thread. That works the same
from a plain script, from a thread, and from inside a running event loop (Jupyter, an
async web framework calling sync code) — where ``asyncio.run`` would fail — without
patching asyncio.

Streams are pumped by a task on that loop into a thread-safe queue, so a sync consumer
pays one queue hand-off per chunk, not one cross-thread round trip. Stopping early (break,
``close()``, garbage collection, KeyboardInterrupt) cancels the task and waits until the
provider's cleanup (closing sockets, deleting upstream chats) has finished.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

__all__ = ["get_loop", "run", "iterate", "finalize"]

T = TypeVar("T")

_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None
_lock = threading.Lock()

_ITEM, _END, _ERROR = 0, 1, 2


def get_loop() -> asyncio.AbstractEventLoop:
    """The background loop, started on first use."""
    global _loop, _thread
    loop = _loop
    if loop is not None and not loop.is_closed():
        return loop
    with _lock:
        if _loop is None or _loop.is_closed():
            ready = threading.Event()
            new_loop = asyncio.new_event_loop()

            def main() -> None:
                asyncio.set_event_loop(new_loop)
                new_loop.call_soon(ready.set)
                new_loop.run_forever()

            _thread = threading.Thread(target=main, name="llmplex-loop", daemon=True)
            _thread.start()
            ready.wait()
            _loop = new_loop
        return _loop


def _check_thread() -> None:
    if threading.current_thread() is _thread:
        raise RuntimeError(
            "llmplex's sync API was called from its own background loop; "
            "use the async API (create_async_generator / AsyncClient) there"
        )


class _Job:
    """A coroutine running as a task on the background loop, controllable from any thread.

    ``done`` is a concurrent future resolved by the task's done-callback, i.e. only once the
    coroutine has really finished, its ``finally`` blocks included. (The future returned by
    ``run_coroutine_threadsafe`` resolves at once when cancelled, before cleanup ran.)
    """

    __slots__ = ("loop", "task", "done")

    def __init__(self, coro: Awaitable[Any]) -> None:
        self.loop = get_loop()
        self.task: asyncio.Future[Any] | None = None
        self.done: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self.loop.call_soon_threadsafe(self._start, coro)

    def _start(self, coro: Awaitable[Any]) -> None:
        self.task = asyncio.ensure_future(coro)
        self.task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Future[Any]) -> None:
        if task.cancelled():
            # Future.cancel() alone does not wake concurrent.futures.wait(); this does.
            self.done.cancel()
            self.done.set_running_or_notify_cancel()
        elif task.exception() is not None:
            self.done.set_exception(task.exception())
        else:
            self.done.set_result(task.result())

    def cancel(self) -> None:
        """Ask the task to stop (thread-safe; runs after ``_start`` as callbacks are FIFO)."""
        try:
            self.loop.call_soon_threadsafe(self._cancel)
        except RuntimeError:  # loop closed at interpreter exit
            pass

    def _cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()

    def cancel_and_wait(self) -> None:
        if not self.done.done():
            self.cancel()
            concurrent.futures.wait([self.done])


def run(awaitable: Awaitable[T]) -> T:
    """Run a coroutine on the background loop and return its result (blocking)."""
    _check_thread()
    job = _Job(awaitable)
    try:
        result: T = job.done.result()
        return result
    except BaseException:
        # Interrupted (KeyboardInterrupt): cancel the task and let its cleanup finish.
        job.cancel_and_wait()
        raise


def finalize(awaitable: Awaitable[Any], timeout: float = 5.0) -> None:
    """Run cleanup on the background loop from any thread, e.g. from a garbage-collection
    finalizer or at interpreter exit: waited for (at most ``timeout`` seconds) from other
    threads; only scheduled from the loop's own thread, which must never block on itself.
    Errors are ignored: there is no caller left to tell."""
    loop = _loop
    job = None
    if loop is not None and not loop.is_closed():
        try:
            job = _Job(awaitable)
        except RuntimeError:  # the loop stopped meanwhile (interpreter exit)
            pass
    if job is None:
        close = getattr(awaitable, "close", None)  # never started: no "never awaited" warning
        if close is not None:
            close()
        return
    if threading.current_thread() is not _thread:
        concurrent.futures.wait([job.done], timeout=timeout)


def iterate(factory: Callable[[], AsyncIterator[T]]) -> _Stream[T]:
    """Iterate synchronously over the async iterator ``factory()`` builds.

    The iterator is created and consumed on the background loop; items reach the caller
    through a queue, in order. Exceptions are re-raised in the caller's thread, after the
    iterator's cleanup has run.
    """
    _check_thread()
    items: queue.SimpleQueue[tuple[int, Any]] = queue.SimpleQueue()

    async def pump() -> None:
        outcome: tuple[int, Any] = (_END, None)
        iterator = factory()
        try:
            async for item in iterator:
                items.put((_ITEM, item))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # delivered to the consumer, not lost in the loop
            outcome = (_ERROR, exc)
        finally:
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                await aclose()
        items.put(outcome)

    return _Stream(items, _Job(pump()))


class _Stream(Iterator[T]):
    """The sync side of :func:`iterate`; ``close()`` cancels the pump and waits for cleanup."""

    def __init__(self, items: queue.SimpleQueue[tuple[int, Any]], job: _Job) -> None:
        self._items = items
        self._job = job
        self._finished = False

    def __iter__(self) -> _Stream[T]:
        return self

    def __next__(self) -> T:
        if self._finished:
            raise StopIteration
        try:
            kind, value = self._items.get()
        except BaseException:
            self.close()
            raise
        if kind == _ITEM:
            item: T = value
            return item
        self._finished = True
        if kind == _ERROR:
            raise value
        raise StopIteration

    def close(self) -> None:
        """Stop the stream: cancel the upstream request and wait for its cleanup."""
        self._finished = True
        self._job.cancel_and_wait()

    def __del__(self) -> None:
        if not self._job.done.done():
            self._job.cancel()

    def __enter__(self) -> _Stream[T]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
