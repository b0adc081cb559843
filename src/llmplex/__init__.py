"""llmplex: one async, streaming interface to many LLM chat services.

Importing the package is cheap: no aiohttp, pydantic or server code is loaded until used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from .errors import (  # after __version__, which the CLI reads early (cheap: pure Python)
    AllProvidersFailed,
    EmulationError,
    InvalidRequestError,
    LLMplexError,
    MissingAuthError,
    ModelNotFoundError,
    OutputValidationError,
    ProviderConnectionError,
    ProviderTimeoutError,
    RateLimitError,
    ResponseError,
    ResponseStatusError,
    StreamError,
    ToolCallError,
)

if TYPE_CHECKING:  # pragma: no cover
    from .client import AsyncClient, Client

__all__ = [
    "__version__",
    "Client",
    "AsyncClient",
    "LLMplexError",
    "ModelNotFoundError",
    "MissingAuthError",
    "ResponseError",
    "ResponseStatusError",
    "RateLimitError",
    "StreamError",
    "EmulationError",
    "ToolCallError",
    "OutputValidationError",
    "ProviderTimeoutError",
    "ProviderConnectionError",
    "AllProvidersFailed",
    "InvalidRequestError",
]


def __getattr__(name: str) -> Any:
    # The clients pull in routing and stores; load them on first use, not at import.
    if name in ("Client", "AsyncClient"):
        from . import client

        return getattr(client, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
