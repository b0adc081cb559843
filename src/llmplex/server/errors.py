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
no upstream key configured          500     server_error                   provider_not_configured
upstream refused the server's key   502     upstream_error                 upstream_auth_error
ProviderConnectionError             502     upstream_error                 upstream_connection_error
EmulationError (emulated tools or   502     upstream_error                 invalid_model_output
JSON unreadable after retries)
StreamError, other ResponseError    502     upstream_error                 upstream_error
provider cooling down (fallback)    503     upstream_error                 upstream_cooling_down
ProviderTimeoutError                504     upstream_error                 upstream_timeout
StateBackendError (Redis down,      503     server_error                   state_backend_unavailable
``[state] on_error = "closed"``)
API key's model not allowed         403     permission_error               model_not_allowed
API key's rpm/tpm spent             429     requests / tokens              rate_limit_exceeded
anything else (a bug)               500     server_error                   internal_error
==================================  ======  =============================  =========================

Choices worth knowing:

- Unknown model is a 404 ``model_not_found``, as OpenAI answers; the message carries the
  router's suggestions ("Did you mean ...?").
- Configuration errors are the server's, not the caller's, and no retry fixes them:
  they carry ``x-should-retry: false`` (which the ``openai`` and ``anthropic`` SDKs obey
  before their own rule of retrying 408, 409, 429 and every 5xx). A provider the server
  has no key for (or no provider with a key, for every route of the model) is a 500
  ``provider_not_configured``: the server is misconfigured, no upstream was asked (a 502
  would blame an upstream; a 503 says "try later", which clients and proxies do). A key
  the upstream refused (its 401/403) is a 502 ``upstream_auth_error``, not a 401: a 401
  would make clients believe their own key is wrong.
- An upstream 400/413/422 is passed on as a 400 and an upstream 404 as a 404: the
  upstream refused what the caller asked for (a too-long prompt, an option value it does
  not take, a model it does not host); the message names the provider and its status.
  Every other upstream status is a 502.
- ``AllProvidersFailed``: the message is a summary line and a line per provider, the
  providers without a key on one line. Members skipped only because they were cooling
  down, and those without a key, carry no news of the upstreams and are left out of the
  status when there are others. If the remaining members all map to one status, that
  status is used (all rate-limited: 429; all timed out: 504); mixed failures are a 502;
  only cooling down: 503; only without a key: 500 ``provider_not_configured``.
  ``Retry-After`` (429, 503) is the smallest wait any member reported.
- Messages are in HTTP terms, and never show where the upstreams are: URLs, hosts,
  ports, IP and proxy addresses in a message are replaced by ``[address hidden]``
  (:func:`public`). The server log has the full text.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..config import _key_env
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
    StateBackendError,
    StreamError,
    summarize,
)

if TYPE_CHECKING:
    from starlette.responses import JSONResponse

__all__ = ["UPSTREAM_REJECTIONS", "APIError", "check_provider_list", "error_for", "public"]

#: upstream statuses that mean "the request's content was refused": passed on as 400
UPSTREAM_REJECTIONS = frozenset({400, 413, 422})
#: statuses and codes of errors that a retry of the same request cannot fix
_FINAL_STATUSES = frozenset({400, 401, 403, 404, 405, 413, 422})
# invalid_model_output: llmplex already asked the model again (the corrective retries)
_FINAL_CODES = frozenset({"upstream_auth_error", "provider_not_configured", "invalid_model_output"})


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
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    @property
    def retryable(self) -> bool:
        """Whether sending the same request again could succeed: not for a bad request, an
        unknown model, a wrong key, a missing or refused upstream key (said to SDKs by
        ``x-should-retry: false``, so they do not retry what cannot work)."""
        return not (self.status in _FINAL_STATUSES or self.code in _FINAL_CODES)

    def all_headers(self) -> dict[str, str]:
        if self.retryable:
            return self.headers
        return {**self.headers, "x-should-retry": "false"}

    def response(self) -> JSONResponse:
        from starlette.responses import JSONResponse

        return JSONResponse(self.body(), status_code=self.status, headers=self.all_headers())


def check_provider_list(provider: object, max_providers: int) -> None:
    """A 400 naming ``provider`` when a request's ``provider`` list is longer than the
    server takes (``max_providers`` of :func:`~llmplex.server.app.create_app`)."""
    if isinstance(provider, list) and len(provider) > max_providers:
        raise APIError(
            400,
            f"Too many providers: the 'provider' list has {len(provider)} entries, "
            f"this server takes at most {max_providers}.",
            code="invalid_value",
            param="provider",
        )


def _retry_headers(seconds: float | None) -> dict[str, str]:
    if seconds is None or seconds < 0 or not math.isfinite(seconds):
        return {}
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


#: what :func:`public` hides: URLs, ``('host', port)`` socket addresses, ``[IPv6]:port``,
#: IPv4 addresses (with a port or not), ``host:port``
_ADDRESS = re.compile(
    r"""
    [A-Za-z][A-Za-z0-9+.-]*://[^\s'"<>]*[^\s'"<>.,:;)\]]
  | \(\s*'[^']*'\s*(?:,\s*\d+\s*){1,3}\)
  | \[[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*\](?::\d{1,5})?
  | \b\d{1,3}(?:\.\d{1,3}){3}(?::\d{1,5})?\b
  | \b[A-Za-z][A-Za-z0-9-]*(?:\.[A-Za-z0-9-]+)*:\d{1,5}\b
""",
    re.VERBOSE,
)
HIDDEN = "[address hidden]"


def public(text: str) -> str:
    """``text`` without the addresses of upstreams and proxies, for an HTTP client: where
    the operator's services are is not the caller's business (the log has them)."""
    return _ADDRESS.sub(HIDDEN, text)


def error_for(exc: BaseException) -> APIError:
    """The HTTP error to send for ``exc`` (see the module docstring for the table);
    its message never shows an upstream's address."""
    error = _error_for(exc)
    if not isinstance(exc, APIError):
        error.message = public(error.message)
    return error


def _not_configured(provider: str) -> str:
    what = "API key" if _key_env(provider) else "credentials"
    return f"the server has no {what} configured for provider {provider}"


def _error_for(exc: BaseException) -> APIError:
    from ..routing import CoolingDown

    if isinstance(exc, APIError):
        return exc
    message = str(exc)
    if isinstance(exc, StateBackendError):  # the message has no password (its own rule)
        return APIError(
            503,
            message,
            "server_error",
            "state_backend_unavailable",
            headers={"x-should-retry": "true"},
        )
    if isinstance(exc, ConversationNotFoundError):
        return APIError(404, message, code="conversation_not_found", param="conversation_id")
    if isinstance(exc, ModelNotFoundError):
        return APIError(404, message, code="model_not_found", param="model")
    if isinstance(exc, InvalidRequestError):
        code = (
            "unsupported_parameter"
            if " is not supported by " in exc.message
            else (
                "unknown_parameter"
                if exc.suggestions or exc.message.startswith("unknown argument")
                else "invalid_value"
            )
        )
        return APIError(400, message, code=code, param=exc.param)
    if isinstance(exc, AllProvidersFailed):
        return _combined(exc)
    if isinstance(exc, CoolingDown):
        return APIError(
            503,
            message,
            "upstream_error",
            "upstream_cooling_down",
            headers=_retry_headers(exc.retry_after),
        )
    if isinstance(exc, RateLimitError):
        return APIError(
            429,
            message,
            "rate_limit_error",
            "rate_limit_exceeded",
            headers=_retry_headers(exc.retry_after),
        )
    if isinstance(exc, MissingAuthError) and exc.unconfigured:
        return APIError(
            500,
            _not_configured(exc.provider or "(unnamed)"),
            "server_error",
            "provider_not_configured",
        )
    if isinstance(exc, MissingAuthError):
        prefix = f"{exc.provider}: " if exc.provider else ""
        return APIError(
            502,
            f"{prefix}HTTP {exc.status}: the upstream service refused the "
            f"server's credentials: {exc.message}",
            "upstream_error",
            "upstream_auth_error",
        )
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
    return APIError(
        500,
        "internal server error (the server log has the details)",
        "server_error",
        "internal_error",
    )


def _combined(exc: AllProvidersFailed) -> APIError:
    from ..routing import CoolingDown

    members = [err for _, err in exc.errors]
    cooling = [e for e in members if isinstance(e, CoolingDown)]
    informative = [
        e
        for e in members
        if not isinstance(e, CoolingDown)
        and not (isinstance(e, MissingAuthError) and e.unconfigured)
    ]
    if not informative and not cooling:  # no key for any: the server is not configured
        names = ", ".join(dict.fromkeys(name for name, _ in exc.errors))
        model = f" for model {exc.model!r}" if exc.model else ""
        return APIError(
            500,
            f"no provider is configured on this server{model}: it has no API key for {names}",
            "server_error",
            "provider_not_configured",
        )
    message = summarize(
        exc,
        lambda names: "the server has no API key configured for: " + ", ".join(names),
        lambda e: error_for(e).message,
    )
    if not informative:
        waits = [e.retry_after for e in cooling if e.retry_after is not None]
        return APIError(
            503,
            message,
            "upstream_error",
            "upstream_cooling_down",
            headers=_retry_headers(min(waits) if waits else None),
        )
    mapped = [error_for(e) for e in informative]
    statuses = {m.status for m in mapped}
    if len(statuses) == 1:
        first = mapped[0]
        headers: Mapping[str, str] = {}
        if first.status in (429, 503):
            waits = [
                wait for e in informative if (wait := getattr(e, "retry_after", None)) is not None
            ]
            headers = _retry_headers(min(waits) if waits else None)
        return APIError(first.status, message, first.type, first.code, first.param, dict(headers))
    return APIError(502, message, "upstream_error", "all_providers_failed")
