"""The llmplex error tree.

Every error raised by llmplex derives from :class:`LLMplexError` and carries, where known,
the provider's name (``.provider``), the HTTP status (``.status``), a trimmed response
body (``.body``) and a server-requested delay (``.retry_after``, seconds). The class is
chosen from the HTTP status or the kind of failure, never by guessing from message text.

::

    LLMplexError
    ├── ModelNotFoundError            unknown model for this provider
    ├── MissingAuthError              no/invalid credentials (401, 403, missing key)
    ├── ResponseError (RuntimeError)  upstream said something wrong
    │   ├── ResponseStatusError       non-2xx; .status, .provider, .body
    │   │   └── RateLimitError        429 (.retry_after when the server said)
    │   ├── StreamError               error event inside a 200 stream
    │   └── EmulationError            an emulated feature unreadable in the answer; .raw
    │       ├── ToolCallError         tool calls by prompt: invalid or missing calls
    │       └── OutputValidationError response_format by prompt: no valid JSON
    ├── ProviderTimeoutError          connect/read timeout (also a TimeoutError)
    ├── ProviderConnectionError       connect/proxy failure, connection lost mid-stream
    │                                 (also a ConnectionError)
    ├── AllProvidersFailed            fallback exhausted; .errors lists each provider's error
    └── InvalidRequestError           bad arguments from the caller (also a ValueError)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

__all__ = [
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


class LLMplexError(Exception):
    """Base class of every llmplex error.

    The message always names the provider (when there is one) and the HTTP status (when
    there is one), so ``str(error)`` alone tells a user what happened and where.
    """

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        status: int | None = None,
        body: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.message = message
        self.provider = provider
        self.status = status
        self.body = body
        self.retry_after = retry_after
        super().__init__(self._render())

    def _render(self) -> str:
        text = self.message
        if self.status is not None and f"HTTP {self.status}" not in text:
            text = f"HTTP {self.status}: {text}" if text else f"HTTP {self.status}"
        if self.provider and not text.startswith(f"{self.provider}:"):
            text = f"{self.provider}: {text}"
        return text

    def __reduce__(self):  # keep keyword attributes across pickling (multiprocessing, logs)
        return (
            _rebuild,
            (type(self), self.message, self.provider, self.status, self.body, self.retry_after),
        )


def _rebuild(cls, message, provider, status, body, retry_after):
    err = cls.__new__(cls)
    LLMplexError.__init__(
        err, message, provider=provider, status=status, body=body, retry_after=retry_after
    )
    return err


class ModelNotFoundError(LLMplexError, LookupError):
    """The model name is not served by this provider (or by any, for the router).

    ``.suggestions`` holds close matches a user probably meant.
    """

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        suggestions: Sequence[str] = (),
        **kwargs,
    ) -> None:
        self.suggestions = list(suggestions)
        super().__init__(message, provider=provider, **kwargs)


class MissingAuthError(LLMplexError):
    """Credentials are missing or were refused (HTTP 401/403, no API key, no cookies)."""


class ResponseError(LLMplexError, RuntimeError):
    """The upstream service answered something wrong or unusable."""


class ResponseStatusError(ResponseError):
    """The upstream answered with a non-2xx HTTP status; ``.status`` and ``.body`` say which."""


class RateLimitError(ResponseStatusError):
    """HTTP 429. ``.retry_after`` holds the server's requested delay in seconds, if given."""


class StreamError(ResponseError):
    """The service reported an error inside a successful (200) stream."""


class EmulationError(ResponseError):
    """llmplex emulated a feature the service lacks (tool calls, JSON output) through the
    prompt, and the model's answer did not give it, also after the corrective retries.

    ``.raw`` is the model's last answer as it came, ``.problems`` what was wrong with it.
    """

    def __init__(self, message: str, *, raw: str = "", problems: Sequence[str] = (),
                 **kwargs: Any) -> None:
        self.raw = raw
        self.problems = list(problems)
        super().__init__(message, **kwargs)

    def __reduce__(self):
        return (_rebuild_emulation, (type(self), self.message, self.raw, self.problems,
                                     self.provider))


def _rebuild_emulation(cls, message, raw, problems, provider):
    return cls(message, raw=raw, problems=problems, provider=provider)


class ToolCallError(EmulationError):
    """Emulated tool calling: the answer's calls were invalid (unknown tool, arguments
    not matching the tool's schema, malformed JSON) or a required call was missing."""


class OutputValidationError(EmulationError):
    """Emulated ``response_format``: the answer held no JSON, or JSON not matching the
    schema."""


class ProviderTimeoutError(LLMplexError, TimeoutError):
    """Connecting to, or waiting for the next bytes from, the service took too long."""


class ProviderConnectionError(LLMplexError, ConnectionError):
    """The connection could not be made (host or proxy unreachable) or was lost mid-response."""


class AllProvidersFailed(LLMplexError):
    """Every provider that could serve the request failed.

    ``.errors`` is a list of ``(provider_name, error)`` pairs, in the order tried.
    """

    def __init__(self, errors: Iterable[tuple[str, BaseException]], model: str | None = None):
        self.errors = list(errors)
        self.model = model
        lines = [f"all providers failed for model {model!r}:" if model else "all providers failed:"]
        for name, err in self.errors:
            lines.append(f"  - {name}: {type(err).__name__}: {err}")
        super().__init__("\n".join(lines))

    def __reduce__(self):
        return (type(self), (self.errors, self.model))


class InvalidRequestError(LLMplexError, ValueError):
    """The caller's arguments are unusable (bad messages, out-of-range option, bad proxy URL,
    a field no provider of the route supports).

    ``.param`` names the argument at fault, in OpenAI's notation (``"temperature"``,
    ``"messages[1].content[0].image_url"``), when there is one; ``.suggestions`` holds
    close matches of a misspelt name.
    """

    def __init__(self, message: str, *, param: str | None = None,
                 suggestions: Sequence[str] = (), **kwargs: Any) -> None:
        self.param = param
        self.suggestions = list(suggestions)
        super().__init__(message, **kwargs)

    def __reduce__(self):
        return (_rebuild_invalid, (self.message, self.param, self.suggestions, self.provider))


def _rebuild_invalid(message, param, suggestions, provider):
    return InvalidRequestError(message, param=param, suggestions=suggestions, provider=provider)
