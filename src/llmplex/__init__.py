"""llmplex: one async, streaming interface to many LLM chat services.

Importing the package is cheap: no aiohttp, pydantic or server code is loaded until used.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import (  # noqa: E402  (cheap: pure Python)
    AllProvidersFailed,
    InvalidRequestError,
    LLMplexError,
    MissingAuthError,
    ModelNotFoundError,
    ProviderConnectionError,
    ProviderTimeoutError,
    RateLimitError,
    ResponseError,
    ResponseStatusError,
    StreamError,
)

__all__ = [
    "__version__",
    "LLMplexError",
    "ModelNotFoundError",
    "MissingAuthError",
    "ResponseError",
    "ResponseStatusError",
    "RateLimitError",
    "StreamError",
    "ProviderTimeoutError",
    "ProviderConnectionError",
    "AllProvidersFailed",
    "InvalidRequestError",
]
