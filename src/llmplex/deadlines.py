"""Answer deadlines: time to the first content, and total time per answer.

``timeout`` (per provider call) bounds each wait for bytes; it cannot catch an upstream
that keeps a stream alive with SSE comments but never answers, nor one that trickles an
answer forever. Two deadlines do, enforced by the router (:meth:`Router.stream`):

- ``first_token_timeout``: seconds from the start of an attempt to its first content
  (text, or reasoning, a tool call, a refusal). Passed before any content, the attempt
  fails with :class:`~llmplex.errors.ProviderTimeoutError` and the next provider is tried.
- ``total_timeout``: seconds for the whole answer, fallback included (and, set for one
  provider, for that provider's attempt).

Each is taken from, first to last: the call (``create(first_token_timeout=...)``), the
provider's options (``[providers.X]`` in config.toml, ``provider_options``), the client
(``AsyncClient(first_token_timeout=...)``, the top level of config.toml), the environment
(``LLMPLEX_FIRST_TOKEN_TIMEOUT``, ``LLMPLEX_TOTAL_TIMEOUT``), then the defaults below.
``math.inf`` turns one off.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

from .errors import InvalidRequestError

__all__ = [
    "DEFAULT_FIRST_TOKEN_TIMEOUT",
    "DEFAULT_TOTAL_TIMEOUT",
    "DEADLINE_OPTIONS",
    "check_deadline",
    "default_deadline",
]

#: seconds to the first content of an answer (generous: some reasoning models stream
#: nothing while they think)
DEFAULT_FIRST_TOKEN_TIMEOUT = 300.0
#: seconds for a whole answer
DEFAULT_TOTAL_TIMEOUT = 1800.0
#: option name -> (environment variable, default)
DEADLINE_OPTIONS: dict[str, tuple[str, float]] = {
    "first_token_timeout": ("LLMPLEX_FIRST_TOKEN_TIMEOUT", DEFAULT_FIRST_TOKEN_TIMEOUT),
    "total_timeout": ("LLMPLEX_TOTAL_TIMEOUT", DEFAULT_TOTAL_TIMEOUT),
}


def check_deadline(name: str, value: Any) -> float | None:
    """``value`` as seconds (None for ``math.inf``: no deadline); anything but a positive
    number is an :class:`InvalidRequestError` naming ``name``."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or math.isnan(value)
        or value <= 0
    ):
        raise InvalidRequestError(
            f"{name} must be a positive number of seconds (inf: none), not {value!r}", param=name
        )
    return None if math.isinf(value) else float(value)


def default_deadline(name: str, environ: Mapping[str, str] | None = None) -> float | None:
    """The deadline ``name`` from the environment, else its default."""
    variable, default = DEADLINE_OPTIONS[name]
    raw = (os.environ if environ is None else environ).get(variable)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise InvalidRequestError(
            f"{variable} must be a number of seconds, not {raw!r}", param=variable
        ) from None
    return check_deadline(variable, value)
