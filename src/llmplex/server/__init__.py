"""llmplex's OpenAI-compatible HTTP API (the ``[server]`` extra: FastAPI on uvicorn).

>>> from llmplex import AsyncClient
>>> from llmplex.server import create_app, ServerThread
>>> with ServerThread(create_app(AsyncClient())) as server:
...     ...  # openai.OpenAI(base_url=server.url + "/v1", api_key="unused")

``llmplex serve`` runs it from the command line; ``llmplex serve --emulate`` backs every
provider with the local emulators, to try the whole stack offline.

The names below are imported on first use, so :mod:`llmplex.server.emulated` (the
emulators, aiohttp only: ``llmplex emulate``, ``llmplex chat --emulate``) works on a base
install, without FastAPI or uvicorn.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import EMULATED_NOTICE, create_app
    from .errors import APIError, error_for
    from .middleware import BodyLimit
    from .runner import ServerThread, bind, serve_forever

__all__ = [
    "EMULATED_NOTICE",
    "APIError",
    "BodyLimit",
    "ServerThread",
    "bind",
    "create_app",
    "error_for",
    "serve_forever",
]

_WHERE = {
    "create_app": ".app",
    "EMULATED_NOTICE": ".app",
    "BodyLimit": ".middleware",
    "APIError": ".errors",
    "error_for": ".errors",
    "ServerThread": ".runner",
    "bind": ".runner",
    "serve_forever": ".runner",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
