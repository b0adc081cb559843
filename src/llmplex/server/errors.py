"""llmplex errors as OpenAI-shaped HTTP errors.

Every error the server sends has OpenAI's body, ``{"error": {"message", "type", "param",
"code"}}``, so the ``openai`` SDK raises its usual exception classes
(``BadRequestError``, ``NotFoundError``, ``RateLimitError``, ``APIStatusError``...).

==================================  ======  =============================  =========================
error                               status  type                           code
==================================  ======  =============================  =========================
bad request body / InvalidRequest   400     invalid_request_error          invalid_value, ...
upstream 400/413/422 (refused the   400     invalid_request_error          upstream_rejected_request
request's content or options)
upstream 404 (no such model there)  404     invalid_request_error          upstream_not_found
missing/wrong server API key        401     invalid_request_error          invalid_api_key
ModelNotFoundError                  404     invalid_request_error          model_not_found
ConversationNotFoundError           404     invalid_request_error          conversation_not_found
body larger than the limit          413     invalid_request_error          request_too_large
RateLimitError (upstream 429)       429     rate_limit_error               rate_limit_exceeded
MissingAuthError (upstream)         502     upstream_error                 upstream_auth_error
ProviderConnectionError             502     upstream_error                 upstream_connection_error
EmulationError (emulated tools or   502     upstream_error                 invalid_model_output
JSON unreadable after retries)
StreamError, other ResponseError    502     upstream_error                 upstream_error
provider cooling down (fallback)    503     upstream_error                 upstream_cooling_down
ProviderTimeoutError                504     upstream_error                 upstream_timeout
anything else (a bug)               500     server_error                   internal_error
==================================  ======  =============================  =========================

Choices worth knowing:

- Unknown model is a 404 ``model_not_found``, as OpenAI answers; the message carries the
  router's suggestions ("Did you mean ...?").
- ``MissingAuthError`` is a 502, not a 401: it is the *server's* credentials for an
  upstream service that are missing or refused, not the caller's; a 401 would make
  clients believe their own key is wrong.
- An upstream 400/413/422 is passed on as a 400 and an upstream 404 as a 404: the
  upstream refused what the caller asked for (a too-long prompt, an option value it does
  not take, a model it does not host); the message names the provider and its status.
  Every other upstream status is a 502.
- ``AllProvidersFailed``: members skipped only because they were cooling down carry no
  new information and are left out when there are others. If the remaining members all
  map to one status, that status is used (all rate-limited: 429; all timed out: 504;
  all only cooling down: 503); mixed failures are a 502. ``Retry-After`` (429, 503) is
  the smallest wait any member reported.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..conversations.base import ConversationNotFoundError
from ..errors import (
    AllProvidersFailed,
    EmulationError,
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

__all__ = ["APIError", "error_for", "UPSTREAM_REJECTIONS"]

#: upstream statuses that mean "the request's content was refused": passed on as 400
UPSTREAM_REJECTIONS = frozenset({400, 413, 422})
#: statuses and codes of errors that a retry of the same request cannot fix
_FINAL_STATUSES = frozenset({400, 401, 403, 404, 405, 413, 422})
# invalid_model_output: llmplex already asked the model again (the corrective retries)
_FINAL_CODES = frozenset({"upstream_auth_error", "invalid_model_output"})


@dataclass(eq=False)
class APIError(Exception):
    """An HTTP error in OpenAI's shape; raise it from a handler or build it from an error."""

    status: int
    message: str
    type: str = "invalid_request_error"
    code: str | None = None
    param: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param,
                          "code": self.code}}

    @property
    def retryable(self) -> bool:
        """Whether sending the same request again could succeed: not for a bad request, an
        unknown model, a wrong key or a missing upstream key (said to SDKs by
        ``x-should-retry: false``, so they do not retry what cannot work)."""
        return not (self.status in _FINAL_STATUSES or self.code in _FINAL_CODES)

    def all_headers(self) -> dict[str, str]:
        if self.retryable:
            return self.headers
        return {**self.headers, "x-should-retry": "false"}

    def response(self) -> Any:
        from starlette.responses import JSONResponse

        return JSONResponse(self.body(), status_code=self.status, headers=self.all_headers())


def _retry_headers(seconds: float | None) -> dict[str, str]:
    if seconds is None or seconds < 0 or not math.isfinite(seconds):
        return {}
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


def error_for(exc: BaseException) -> APIError:
    """The HTTP error to send for ``exc`` (see the module docstring for the table)."""
    from ..routing import CoolingDown

    if isinstance(exc, APIError):
        return exc
    message = str(exc)
    if isinstance(exc, ConversationNotFoundError):
        return APIError(404, message, code="conversation_not_found", param="conversation_id")
    if isinstance(exc, ModelNotFoundError):
        return APIError(404, message, code="model_not_found", param="model")
    if isinstance(exc, InvalidRequestError):
        code = "unsupported_parameter" if " is not supported by " in exc.message else (
            "unknown_parameter" if exc.suggestions or exc.message.startswith("unknown argument")
            else "invalid_value")
        return APIError(400, message, code=code, param=exc.param)
    if isinstance(exc, AllProvidersFailed):
        return _combined(exc)
    if isinstance(exc, CoolingDown):
        return APIError(503, message, "upstream_error", "upstream_cooling_down",
                        headers=_retry_headers(exc.retry_after))
    if isinstance(exc, RateLimitError):
        return APIError(429, message, "rate_limit_error", "rate_limit_exceeded",
                        headers=_retry_headers(exc.retry_after))
    if isinstance(exc, MissingAuthError):
        return APIError(502, message, "upstream_error", "upstream_auth_error")
    if isinstance(exc, ProviderTimeoutError):
        return APIError(504, message, "upstream_error", "upstream_timeout")
    if isinstance(exc, ProviderConnectionError):
        return APIError(502, message, "upstream_error", "upstream_connection_error")
    if isinstance(exc, ResponseStatusError) and exc.status in UPSTREAM_REJECTIONS:
        return APIError(400, message, "invalid_request_error", "upstream_rejected_request")
    if isinstance(exc, ResponseStatusError) and exc.status == 404:
        return APIError(404, message, "invalid_request_error", "upstream_not_found")
    if isinstance(exc, EmulationError):
        return APIError(502, message, "upstream_error", "invalid_model_output")
    if isinstance(exc, StreamError):
        return APIError(502, message, "upstream_error", "upstream_stream_error")
    if isinstance(exc, (ResponseError, LLMplexError)):
        return APIError(502, message, "upstream_error", "upstream_error")
    # Not an llmplex error: a bug. Its text may hold anything, so it is not sent.
    return APIError(500, "internal server error (the server log has the details)",
                    "server_error", "internal_error")


def _combined(exc: AllProvidersFailed) -> APIError:
    from ..routing import CoolingDown

    members = [err for _, err in exc.errors]
    informative = [e for e in members if not isinstance(e, CoolingDown)] or members
    mapped = [error_for(e) for e in informative]
    statuses = {m.status for m in mapped}
    message = str(exc)
    if len(statuses) == 1:
        first = mapped[0]
        headers: Mapping[str, str] = {}
        if first.status in (429, 503):
            waits = [e.retry_after for e in informative if e.retry_after is not None]
            headers = _retry_headers(min(waits) if waits else None)
        return APIError(first.status, message, first.type, first.code, first.param,
                        dict(headers))
    return APIError(502, message, "upstream_error", "all_providers_failed")
