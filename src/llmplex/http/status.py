"""Map an HTTP error response to the llmplex error tree, by status code."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from ..errors import (
    LLMplexError,
    MissingAuthError,
    RateLimitError,
    ResponseStatusError,
)

if TYPE_CHECKING:  # pragma: no cover
    import aiohttp

__all__ = [
    "raise_for_status",
    "error_for_status",
    "parse_retry_after",
    "extract_message",
    "MAX_RETRY_AFTER",
]

BODY_LIMIT = 1000  # characters of an error body kept on the exception

#: The longest wait (seconds) an upstream's ``Retry-After`` is believed: a longer one, an
#: HTTP date further ahead, ``inf`` or ``1e9`` become this many seconds, so no upstream
#: can take a provider out of rotation for longer (the router's cooldown follows
#: ``RateLimitError.retry_after``). Read at each call: set it (or pass
#: ``parse_retry_after(..., cap=...)``) to configure it.
MAX_RETRY_AFTER = 300.0


def parse_retry_after(value: str | None, cap: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header, delta-seconds or an HTTP date, within
    ``[0, cap]`` (``cap``: :data:`MAX_RETRY_AFTER` by default).

    Nothing, an unreadable value or ``nan`` -> ``None`` (the upstream said nothing usable);
    a negative number or a date in the past -> ``0``; ``inf``, a huge number or a date
    further ahead than ``cap`` -> ``cap``. A date without a time zone is taken as GMT, as
    HTTP dates are."""
    if not value:
        return None
    limit = MAX_RETRY_AFTER if cap is None else cap
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            seconds = when.timestamp() - time.time()
        except (TypeError, ValueError, IndexError, OverflowError, OSError):
            return None
    if math.isnan(seconds):
        return None
    return min(max(0.0, seconds), limit)


def extract_message(body: str) -> str:
    """The human part of an error body: JSON ``error.message``/``detail``/``message``/...,
    else the text itself (first line, trimmed)."""
    text = body.strip()
    if not text:
        return ""
    try:
        data: Any = json.loads(text)
    except ValueError:
        return text.splitlines()[0][:300]
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        for key in ("error", "detail", "message", "title"):
            if isinstance(data.get(key), str) and data[key]:
                return str(data[key])
    return text[:300]


def error_for_status(
    status: int,
    body: str,
    *,
    provider: str | None,
    reason: str | None = None,
    retry_after: str | None = None,
    message: str | None = None,
    explain: Mapping[int, str] | None = None,
) -> LLMplexError:
    """Build the error for an HTTP status: 401/403 -> MissingAuthError, 429 ->
    RateLimitError, anything else -> ResponseStatusError. ``message`` overrides the
    text taken from the body (the body is still kept on ``.body``); ``explain`` gives,
    per status, the text to use when the body says nothing (an empty 403...)."""
    body = body[:BODY_LIMIT]
    text = (
        message
        or extract_message(body)
        or (explain or {}).get(status)
        or reason
        or "request failed"
    )
    kwargs: dict[str, Any] = {"provider": provider, "status": status, "body": body}
    if status in (401, 403):
        return MissingAuthError(text, **kwargs)
    if status == 429:
        return RateLimitError(text, retry_after=parse_retry_after(retry_after), **kwargs)
    return ResponseStatusError(text, **kwargs)


async def raise_for_status(
    response: aiohttp.ClientResponse,
    provider: str | None = None,
    message: str | None = None,
    *,
    explain: Mapping[int, str] | None = None,
) -> None:
    """Raise the llmplex error for a response whose status is 400 or above (``message``
    and ``explain`` as in :func:`error_for_status`)."""
    if response.status < 400:
        return
    try:
        raw = await response.content.read(BODY_LIMIT * 4)
    except Exception:  # the body is a courtesy: a broken one must not hide the status
        raw = b""
    raise error_for_status(
        response.status,
        raw.decode("utf-8", "replace"),
        provider=provider,
        reason=response.reason,
        retry_after=response.headers.get("Retry-After"),
        message=message,
        explain=explain,
    )
