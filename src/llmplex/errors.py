"""The llmplex error tree.

Every error raised by llmplex derives from :class:`LLMplexError` and carries, where known,
the provider's name (``.provider``), the HTTP status (``.status``), a trimmed response
body (``.body``) and a server-requested delay (``.retry_after``, seconds). The class is
chosen from the HTTP status or the kind of failure, never by guessing from message text.

::

    LLMplexError
    ├── ModelNotFoundError            unknown model for this provider
    ├── MissingAuthError              no/invalid credentials (401, 403, missing key:
    │                                 .unconfigured)
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
    ├── StateBackendError             the shared state backend (Redis) unreachable or failing
    └── InvalidRequestError           bad arguments from the caller (also a ValueError)

    ProviderWarning (UserWarning)     a non-fatal notice inside a stream (``warnings.warn``)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
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
    "StateBackendError",
    "AllProvidersFailed",
    "InvalidRequestError",
    "ProviderWarning",
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

    # keep keyword attributes across pickling (multiprocessing, logs)
    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild,
            (type(self), self.message, self.provider, self.status, self.body, self.retry_after),
        )


def _rebuild(
    cls: type[LLMplexError],
    message: str,
    provider: str | None,
    status: int | None,
    body: str | None,
    retry_after: float | None,
) -> LLMplexError:
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
        **kwargs: Any,
    ) -> None:
        self.suggestions = list(suggestions)
        super().__init__(message, provider=provider, **kwargs)


class MissingAuthError(LLMplexError):
    """Credentials are missing or were refused (HTTP 401/403, no API key, no cookies).

    ``.unconfigured`` tells the two apart: true when none were configured (nothing was
    sent), false when the service refused them (``.status`` is then 401 or 403).
    """

    @property
    def unconfigured(self) -> bool:
        """No credentials were configured: a matter of configuration, not of the service."""
        return self.status is None


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

    def __init__(
        self, message: str, *, raw: str = "", problems: Sequence[str] = (), **kwargs: Any
    ) -> None:
        self.raw = raw
        self.problems = list(problems)
        super().__init__(message, **kwargs)

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild_emulation,
            (type(self), self.message, self.raw, self.problems, self.provider),
        )


def _rebuild_emulation(
    cls: type[EmulationError], message: str, raw: str, problems: list[str], provider: str | None
) -> EmulationError:
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

    ``.errors`` is a list of ``(provider_name, error)`` pairs, in the order tried. The
    message is a summary line, then one line per provider, trimmed; the providers that
    have no credentials share one line naming the variables to set, and those skipped
    while cooling down share another::

        all providers failed for model 'm':
          Groq: HTTP 500: Internal meltdown
          no key for: Replicate, OpenAI
            (set REPLICATE_API_TOKEN or OPENAI_API_KEY, or add api_key under
            [providers.<Name>] in ~/.config/llmplex/config.toml)
    """

    def __init__(self, errors: Iterable[tuple[str, BaseException]], model: str | None = None):
        self.errors = list(errors)
        self.model = model
        super().__init__(summarize(self, _key_hint))

    @property
    def unconfigured(self) -> bool:
        """Every provider failed for want of credentials (none configured)."""
        return bool(self.errors) and all(_unconfigured(e) for _, e in self.errors)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.errors, self.model))


#: longest line of one provider in an AllProvidersFailed message
LINE_LIMIT = 200


def _unconfigured(error: BaseException) -> bool:
    return isinstance(error, MissingAuthError) and error.unconfigured


def summarize(
    failed: AllProvidersFailed,
    no_key: Callable[[list[str]], str],
    text: Callable[[BaseException], str] = str,
) -> str:
    """The text of ``failed``: a summary line, one line per provider (the first line of
    ``text(error)``, the provider named once, trimmed), the providers without
    credentials as one line (``no_key(names)``), the cooling-down ones as one more."""
    model = failed.model
    lines = [f"all providers failed for model {model!r}:" if model else "all providers failed:"]
    missing: list[str] = []
    cooling: list[tuple[str, BaseException]] = []
    others: dict[str, int] = {}  # line -> times (the router's retries fail alike)
    for name, err in failed.errors:
        if _unconfigured(err):
            missing.append(name)
        elif type(err).__name__ == "CoolingDown":  # routing's (which imports this module)
            cooling.append((name, err))
        else:
            shown = trim(own_line(name, text(err) or type(err).__name__))
            others[shown] = others.get(shown, 0) + 1
    lines.extend(
        f"  {shown}" + (f" ({times} attempts)" if times > 1 else "")
        for shown, times in others.items()
    )
    if missing:
        lines.append("  " + no_key(list(dict.fromkeys(missing))))
    if cooling:
        waits = [wait for _, e in cooling if (wait := getattr(e, "retry_after", None))]
        longest = f" for up to {max(waits):.0f}s" if waits else ""
        lines.append(
            f"  cooling down{longest} after failing recently: "
            + ", ".join(name for name, _ in cooling)
        )
    return "\n".join(lines)


def own_line(name: str, message: str) -> str:
    """``name: message``, of the message's first line, the name once."""
    text = (message.strip().splitlines() or ["failed"])[0]
    return text if text.startswith(f"{name}:") else f"{name}: {text}"


def trim(text: str, limit: int = LINE_LIMIT) -> str:
    """``text`` cut to ``limit`` characters, an ellipsis saying so."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def key_variables(names: Iterable[str]) -> list[str]:
    """The environment variables that hold the keys of the providers ``names``, in
    order, for those that read one."""
    from .config import _key_env

    found = []
    for name in names:
        variable = _key_env(name)
        if variable and variable not in found:
            found.append(variable)
    return found


def or_list(items: Sequence[str]) -> str:
    """``a, b or c``."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def _key_hint(names: list[str]) -> str:
    import textwrap

    from .config import config_path, display_path

    variables = key_variables(names)
    table = f"[providers.{names[0]}]" if len(names) == 1 else "[providers.<Name>]"
    # the one provider without a key variable (OpenAssistant) takes browser cookies
    what = "api_key" if len(variables) == len(names) else "api_key or cookies"
    try:
        where = display_path(config_path())
    except Exception:  # an error's text must never fail to be made
        where = "llmplex's config.toml"
    hint = (
        f"(set {or_list(variables)}, or add " if variables else "(add "
    ) + f"{what} under {table} in {where})"
    wrapped = textwrap.wrap(hint, 84, break_on_hyphens=False, break_long_words=False)
    return "no key for: " + ", ".join(names) + "".join("\n    " + w for w in wrapped)


class InvalidRequestError(LLMplexError, ValueError):
    """The caller's arguments are unusable (bad messages, out-of-range option, bad proxy URL,
    a field no provider of the route supports).

    ``.param`` names the argument at fault, in OpenAI's notation (``"temperature"``,
    ``"messages[1].content[0].image_url"``), when there is one; ``.suggestions`` holds
    close matches of a misspelt name.
    """

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        suggestions: Sequence[str] = (),
        **kwargs: Any,
    ) -> None:
        self.param = param
        self.suggestions = list(suggestions)
        super().__init__(message, **kwargs)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_invalid, (self.message, self.param, self.suggestions, self.provider))


def _rebuild_invalid(
    message: str, param: str | None, suggestions: list[str], provider: str | None
) -> InvalidRequestError:
    return InvalidRequestError(message, param=param, suggestions=suggestions, provider=provider)


class StateBackendError(LLMplexError):
    """The shared state backend (:mod:`llmplex.state`: Redis) could not be reached or
    failed an operation. The message names the backend by its URL without password; the
    server answers 503 ``state_backend_unavailable`` with ``x-should-retry: true``."""


class ProviderWarning(UserWarning):
    """A service's non-fatal notice inside an answer (Ai2's ``error`` chunks of severity
    ``warning`` or ``info``): issued with :func:`warnings.warn`, the answer goes on. Filter
    it with ``warnings.filterwarnings("ignore", category=ProviderWarning)``."""
