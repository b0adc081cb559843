"""Run the app on uvicorn: in the foreground (``llmplex serve``) or in a background
thread (tests, notebooks, programs embedding the API)."""

from __future__ import annotations

import socket
import threading
from typing import Any

__all__ = ["bind", "serve_forever", "ServerThread"]


def bind(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening-ready socket on ``host:port`` (port 0: an ephemeral one), so the
    caller knows the real port before the server starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def _config(app: Any, host: str, port: int, **options: Any) -> Any:
    import uvicorn

    options.setdefault("log_level", "info")
    # On shutdown, streams still open get this long to finish, then are cancelled (their
    # upstream requests too, with the providers' cleanup).
    options.setdefault("timeout_graceful_shutdown", 5)
    # Requests are logged by uvicorn's access log: method, path and status only (no
    # headers, no bodies, so no keys).
    # lifespan "on": the app opens its upstream connection pool at start-up and closes it
    # at shutdown.
    return uvicorn.Config(app, host=host, port=port, lifespan="on", **options)


def serve_forever(app: Any, sock: socket.socket, **options: Any) -> None:
    """Serve ``app`` on the bound ``sock`` until Ctrl-C or SIGTERM, then return.

    uvicorn shuts down gracefully on either signal and then raises it again for the
    previous handler; SIGTERM's handler is set to raise ``KeyboardInterrupt`` meanwhile,
    so both end here, and the caller's cleanup runs (the default would kill the process).
    """
    import signal

    import uvicorn

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    host, port = sock.getsockname()[:2]
    server = uvicorn.Server(_config(app, host, port, **options))
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, interrupt) if main else None
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)


class ServerThread:
    """The app on uvicorn in a daemon thread: ``with ServerThread(app) as server:`` gives
    ``server.url`` (``http://127.0.0.1:<port>``); leaving the block shuts it down.

    ``log_config=None`` by default: uvicorn's loggers then propagate to the root logger
    (so pytest's ``caplog`` sees them) instead of getting their own handlers."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, **options: Any) -> None:
        import uvicorn

        options.setdefault("log_config", None)
        self.sock = bind(host, port)
        self.host, self.port = self.sock.getsockname()[:2]
        self.url = f"http://{self.host}:{self.port}"
        self.server = uvicorn.Server(_config(app, self.host, self.port, **options))
        self._thread: threading.Thread | None = None

    def start(self) -> str:
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                        name="llmplex-server", daemon=True)
        self._thread.start()
        while not self.server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the server thread ended before it started listening")
            self._thread.join(0.01)
        return self.url

    def stop(self) -> None:
        if self._thread is None:
            return
        self.server.should_exit = True
        self._thread.join(timeout=10)
        self._thread = None
        self.sock.close()

    def __enter__(self) -> ServerThread:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
