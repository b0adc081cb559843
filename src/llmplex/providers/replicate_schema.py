"""Each Replicate model's schema, read once and kept: in memory and on disk.

``owner/name`` is read from ``GET /v1/models/{owner}/{name}`` (its ``latest_version``),
kept :attr:`SchemaCache.ttl` seconds (a model may publish a new version); a pinned
``owner/name:version`` from ``GET /v1/models/{owner}/{name}/versions/{version}``, kept for
good (a version never changes). Both are also written under llmplex's data directory
(``<data_dir>/replicate/schemas/``), so another process, or this one when Replicate is slow
to answer, need not ask again. The request has a short deadline (:attr:`timeout`); when
it fails for a reason that says nothing of the model (a timeout, a lost connection, a 5xx),
a schema kept on disk, however old, stands in. A 404 is "Model not found", never papered over.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..errors import (
    ProviderConnectionError,
    ProviderTimeoutError,
    ResponseError,
    ResponseStatusError,
)
from ..http.session import Session
from .replicate_models import ModelSchema

__all__ = ["SchemaCache"]


class SchemaCache:
    """Schemas by (API origin, model); :meth:`latest` answers synchronously."""

    def __init__(
        self, ttl: float = 600.0, timeout: float = 5.0, directory: Path | None = None
    ) -> None:
        self.ttl = ttl
        self.timeout = timeout
        #: where schemas are written (None: ``<data_dir>/replicate/schemas``)
        self.directory = directory
        self._memory: dict[tuple[str, str], tuple[float, ModelSchema]] = {}
        self._latest: dict[str, ModelSchema] = {}

    def clear(self) -> None:
        """Forget the schemas kept in memory (those on disk stay)."""
        self._memory.clear()
        self._latest.clear()

    def latest(self, model: str) -> ModelSchema | None:
        """The schema of ``model`` read last (from any origin), if any was."""
        return self._latest.get(model)

    async def get(self, session: Session, api: str, model: str) -> ModelSchema:
        """The schema of ``model`` at ``api`` (kept, or read now)."""
        key = (api, model)
        pinned = ":" in model
        kept = self._memory.get(key)
        if kept is not None and (pinned or time.monotonic() - kept[0] < self.ttl):
            return kept[1]
        stored = self._read(api, model)
        if stored is not None and (pinned or time.time() - stored[0] < self.ttl):
            return self._keep(key, stored[1])
        try:
            async with asyncio.timeout(self.timeout):
                data = await _fetch(session, api, model)
        except TimeoutError:
            if stored is not None:
                return self._keep(key, stored[1])
            raise ProviderTimeoutError(
                f"the schema of {model} did not arrive within {self.timeout:g} s",
                provider="Replicate",
            ) from None
        except (ProviderConnectionError, ProviderTimeoutError, ResponseStatusError) as exc:
            server_side = not isinstance(exc, ResponseStatusError) or (exc.status or 0) >= 500
            if stored is not None and server_side:
                return self._keep(key, stored[1])
            raise
        try:
            schema = ModelSchema.parse(model, data) if isinstance(data, dict) else None
        except (ValueError, TypeError):
            schema = None
        if schema is None:
            raise ResponseError(f"model {model} has no readable input schema", provider="Replicate")
        self._write(api, model, data)
        return self._keep(key, schema)

    def _keep(self, key: tuple[str, str], schema: ModelSchema) -> ModelSchema:
        self._memory[key] = (time.monotonic(), schema)
        self._latest[key[1]] = schema
        return schema

    # -- on disk ----------------------------------------------------------------------------

    def _path(self, api: str, model: str) -> Path:
        directory = self.directory
        if directory is None:
            from ..config import data_dir

            directory = data_dir() / "replicate" / "schemas"
        return directory / f"{_digest(api, model)[:32]}.json"

    def _read(self, api: str, model: str) -> tuple[float, ModelSchema] | None:
        try:
            saved = json.loads(self._path(api, model).read_text("utf-8"))
            if saved.get("key") != _digest(api, model) or saved.get("model") != model:
                return None
            return float(saved["saved_at"]), ModelSchema.parse(model, saved["data"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None  # none kept, or unreadable: read it again

    def _write(self, api: str, model: str, data: dict[str, Any]) -> None:
        path = self._path(api, model)
        # the origin only as a digest: a base URL may carry credentials
        record = {"key": _digest(api, model), "model": model, "saved_at": time.time(), "data": data}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_suffix(f".{os.getpid()}.tmp")
            temporary.write_text(json.dumps(record), "utf-8")
            os.replace(temporary, path)  # whole, or not at all, for a concurrent reader
        except OSError:
            pass  # a read-only data directory: kept in memory only


def _digest(api: str, model: str) -> str:
    return hashlib.sha256(f"{api}\n{model}".encode()).hexdigest()


async def _fetch(session: Session, api: str, model: str) -> Any:
    name, _, version = model.partition(":")
    url = f"{api}/v1/models/{name}"
    if version:
        url += f"/versions/{quote(version, safe='')}"
    async with session.request("GET", url, messages={404: f"Model not found: {model}"}) as response:
        return await session.read_json(response)
