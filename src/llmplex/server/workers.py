"""``llmplex serve --workers N``: N processes serving one listening socket.

Pre-fork, not uvicorn's multiprocess supervisor: uvicorn's starts workers by ``spawn``
with an import string, while ``llmplex serve`` builds its app from the command line and
config (a closure), serves it with its own protocol class (the client limits of
:mod:`llmplex.server.runner`) on a socket it bound itself. So the supervisor here binds
once, forks N children, and each child builds its own client and app (after the fork:
no event loop, connection pool or thread crosses it) and serves the inherited socket
with :func:`~llmplex.server.runner.serve_forever`; the kernel hands each new connection
to one of them.

State is per process: each worker has its own provider health, discovered models and
emulator state, unless the state backend is shared (``LLMPLEX_STATE_URL`` /
``[state] url``, docs/state.md). Metrics are summed across workers: the supervisor points
``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory (removed at exit) before the first
fork.

Signals: SIGTERM or SIGINT makes the supervisor close its copy of the socket and send
SIGTERM to every worker (once: a worker's own Ctrl-C from the terminal does not turn
into a forced exit), which drains as a single process does; the supervisor exits when
all have, 0 if all exited 0. A worker that dies otherwise is started again (at most once
a second per worker), unless it exits with :data:`FATAL` (2: it could not start, a
configuration error): then all are stopped and the supervisor exits 2. A supervisor that
dies without stopping them (SIGKILL, a crash) leaves no orphans: each worker watches a pipe
only the supervisor holds open, and stops as on SIGTERM when it closes.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["WORKER_HEADER", "WorkerTag", "supervise"]

#: response header naming the worker (1..N) that answered, with ``--workers`` above 1
WORKER_HEADER = b"x-llmplex-worker"

log = logging.getLogger("llmplex.server")

_SIGNALS = (signal.SIGTERM, signal.SIGINT)
#: a worker's exit status saying it cannot start (a usage error): not restarted
FATAL = 2


class WorkerTag:
    """Plain ASGI: adds :data:`WORKER_HEADER` (the worker's number) to every response,
    so an operator (and a test) sees which worker answered."""

    def __init__(self, app: ASGIApp, number: int) -> None:
        self.app = app
        self.value = str(number).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def tagged(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {
                    **message,
                    "headers": [*(message.get("headers") or ()), (WORKER_HEADER, self.value)],
                }
            await send(message)

        await self.app(scope, receive, tagged)


def supervise(workers: int, sock: socket.socket, serve: Callable[[int], None]) -> int:
    """Run ``serve(number)`` (number 1..``workers``) in that many forked children sharing
    ``sock``; return the exit status once they have all ended after a signal."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, not {workers!r}")
    metrics_dir = tempfile.mkdtemp(prefix="llmplex-metrics-")
    # Before any fork and before prometheus_client is imported in a child (it reads the
    # variable when its value class is first chosen).
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    children: dict[int, int] = {}  # pid -> worker number
    started: dict[int, float] = {}  # worker number -> when it was last started
    stopping = False
    failed = fatal = False
    # Only the supervisor holds the write end: when it dies, however (SIGKILL included),
    # the workers read the end of the pipe and stop as on SIGTERM (see _watch_supervisor).
    lifeline, held = os.pipe()

    def spawn(number: int) -> None:
        # Signals stay blocked across the fork: the child must not run our handler.
        signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        try:
            pid = os.fork()
            if pid == 0:  # the worker
                code = 1
                try:
                    for signum in _SIGNALS:
                        signal.signal(
                            signum,
                            signal.SIG_DFL
                            if signum == signal.SIGTERM
                            else signal.default_int_handler,
                        )
                    signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
                    os.close(held)
                    _watch_supervisor(lifeline)
                    serve(number)
                    code = 0
                except KeyboardInterrupt:
                    code = 0
                except SystemExit as exc:
                    code = exc.code if isinstance(exc.code, int) else 1
                except BaseException:  # report it; the supervisor restarts it
                    traceback.print_exc()
                finally:
                    sys.stdout.flush()
                    sys.stderr.flush()
                    os._exit(code)
            children[pid] = number
            started[number] = time.monotonic()
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        if stopping:
            return
        stopping = True
        sock.close()  # the kernel refuses connections once the workers close theirs too
        try:  # a byte for each worker's watch: this stop is ours (it need not signal)
            os.write(held, b"s" * len(children))
        except OSError:
            pass
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    previous = {signum: signal.signal(signum, stop) for signum in _SIGNALS}
    try:
        for number in range(1, workers + 1):
            spawn(number)
        while children:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            number = children.pop(pid, 0)
            _mark_dead(pid)
            code = os.waitstatus_to_exitcode(status)
            if stopping:
                failed |= code != 0
                continue
            if code == FATAL:  # it could not start: neither can the others
                print(
                    f"llmplex: worker {number} could not start; stopping",
                    file=sys.stderr,
                    flush=True,
                )
                stop(signal.SIGTERM, None)
                fatal = True
                continue
            print(
                f"llmplex: worker {number} (pid {pid}) exited with status {code}; "
                "starting it again",
                file=sys.stderr,
                flush=True,
            )
            wait = started.get(number, 0.0) + 1.0 - time.monotonic()
            if wait > 0:
                time.sleep(wait)  # a worker that dies at once must not spin
            if not stopping:
                spawn(number)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        os.close(lifeline)
        os.close(held)
        shutil.rmtree(metrics_dir, ignore_errors=True)
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return FATAL if fatal else 1 if failed else 0


def _watch_supervisor(lifeline: int) -> None:
    """In a worker: a daemon thread waiting on the pipe only the supervisor writes to.
    The read returns a byte when the supervisor stops the workers itself (its SIGTERM
    follows), or nothing when its end closes, which the kernel does when it exits or is
    killed: then the worker sends itself SIGTERM and drains as it would on the
    supervisor's own signal, instead of serving on as an orphan."""

    def wait() -> None:
        try:
            if os.read(lifeline, 1):
                return  # the supervisor is stopping us itself (a second signal would force)
        except OSError:
            pass
        log.warning("the supervisor is gone; worker (pid %d) stopping", os.getpid())
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=wait, name="llmplex-supervisor-watch", daemon=True).start()


def _mark_dead(pid: int) -> None:
    """Drop a dead worker's live gauges (its counters stay in the sums)."""
    try:
        from prometheus_client import multiprocess
    except ImportError:  # pragma: no cover - metrics off and the package absent
        return
    multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
