"""HTTP transport shared by all providers: session, status mapping, stream decoders.

The decoders (:mod:`.sse`, :mod:`.ndjson`) are pure Python and import nothing heavy;
:mod:`.session` imports aiohttp, so it is only loaded when a provider makes a request
(it holds :class:`~.session.Secrets`, the one scrubbing policy for what requests carried);
:mod:`.pool` imports it when a pool makes its connector.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .ndjson import MalformedLineError, NDJSONDecoder
from .sse import ServerSentEvent, SSEDecoder

if TYPE_CHECKING:  # pragma: no cover
    from .pool import ConnectionPool
    from .session import Secrets, Session, redact_url
    from .status import raise_for_status

__all__ = [
    "SSEDecoder",
    "ServerSentEvent",
    "NDJSONDecoder",
    "MalformedLineError",
    "Session",
    "Secrets",
    "ConnectionPool",
    "redact_url",
    "raise_for_status",
]


def __getattr__(name: str) -> Any:
    if name in ("Session", "Secrets", "redact_url"):
        from . import session

        return getattr(session, name)
    if name == "ConnectionPool":
        from .pool import ConnectionPool

        return ConnectionPool
    if name == "raise_for_status":
        from .status import raise_for_status

        return raise_for_status
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
