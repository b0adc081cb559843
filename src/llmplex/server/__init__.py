"""llmplex's OpenAI-compatible HTTP API (the ``[server]`` extra: FastAPI on uvicorn).

>>> from llmplex import AsyncClient
>>> from llmplex.server import create_app, ServerThread
>>> with ServerThread(create_app(AsyncClient())) as server:
...     ...  # openai.OpenAI(base_url=server.url + "/v1", api_key="unused")

``llmplex serve`` runs it from the command line; ``llmplex serve --emulate`` backs every
provider with the local emulators, to try the whole stack offline.
"""

from __future__ import annotations

from .app import EMULATED_NOTICE, create_app
from .middleware import BodyLimit
from .errors import APIError, error_for
from .runner import ServerThread, bind, serve_forever

__all__ = ["create_app", "ServerThread", "bind", "serve_forever", "APIError", "error_for",
           "BodyLimit", "EMULATED_NOTICE"]
