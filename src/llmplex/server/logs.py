"""The server's log lines: plain text or one JSON object per line, each with the id of
the request it belongs to (``-`` outside requests).

:func:`log_config` is the ``logging.config.dictConfig`` dictionary ``llmplex serve`` gives
uvicorn: uvicorn's own loggers (its access log: method, path, status; never headers or
bodies) and llmplex's, through one handler on stderr with :class:`RequestIdFilter`.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from .request_id import request_id

__all__ = ["LOG_FORMATS", "JsonFormatter", "RequestIdFilter", "log_config"]

#: ``--log-format`` / ``[server] log_format``
LOG_FORMATS = ("text", "json")

_TEXT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


class RequestIdFilter(logging.Filter):
    """Sets ``record.request_id``: the id of the request being served, else ``-``."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get() or "-"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``time`` (UTC, ISO 8601), ``level``, ``logger``,
    ``message``, ``request_id``, and ``exception`` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        seconds = time.gmtime(record.created)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", seconds) + f".{int(record.msecs):03d}Z"
        entry: dict[str, Any] = {
            "time": stamp,
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or "-",
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def log_config(fmt: str = "text", level: str = "info") -> dict[str, Any]:
    """The logging set-up of ``llmplex serve``: ``fmt`` one of :data:`LOG_FORMATS`."""
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, not {fmt!r}")
    formatter: dict[str, Any] = (
        {"()": f"{__name__}.JsonFormatter"} if fmt == "json" else {"format": _TEXT}
    )
    handler = {
        "class": "logging.StreamHandler",
        "stream": "ext://sys.stderr",
        "formatter": "main",
        "filters": ["request_id"],
    }
    level = level.upper()
    loggers = {
        name: {"handlers": ["main"], "level": level, "propagate": False}
        for name in ("uvicorn", "uvicorn.access", "llmplex")
    }
    loggers["uvicorn.error"] = {"level": level}  # propagates to "uvicorn"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": f"{__name__}.RequestIdFilter"}},
        "formatters": {"main": formatter},
        "handlers": {"main": handler},
        "loggers": loggers,
    }
