"""``POST /v1/embeddings``: OpenAI's Embeddings API over ``client.embeddings.create``.

The request is forwarded as given to the provider serving the model
(:mod:`llmplex.embeddings`: OpenAI-compatible upstreams with an embeddings API; local
servers only when the operator configured them), and its answer returned in OpenAI's
shape, with llmplex's ``provider``. Errors have OpenAI's shape (a provider without
embeddings: 400 naming it; an unknown model: 404); a client that leaves before the
answer cancels the upstream request.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from .errors import APIError, check_provider_list
from .streaming import ClientGone, disconnected, unless_gone

if TYPE_CHECKING:  # pragma: no cover
    from ..client import AsyncClient

__all__ = ["EmbeddingRequest", "install_embeddings"]

log = logging.getLogger("llmplex.server")

Tokens = Annotated[list[Annotated[StrictInt, Field(ge=0)]], Field(min_length=1)]


class EmbeddingRequest(BaseModel):
    """``POST /v1/embeddings``: OpenAI's fields plus llmplex's ``provider``."""

    model_config = ConfigDict(
        strict=True,
        extra="forbid",
        json_schema_extra={
            "examples": [{"model": "text-embedding-3-small", "input": "The food was delicious"}]
        },
    )

    model: StrictStr = Field(..., description="An embedding model, or 'provider:model'.")
    input: (
        StrictStr
        | Annotated[list[StrictStr], Field(min_length=1, max_length=2048)]
        | Tokens
        | Annotated[list[Tokens], Field(min_length=1, max_length=2048)]
    )
    dimensions: Annotated[int, Field(ge=1)] | None = None
    encoding_format: Literal["float", "base64"] | None = None
    user: StrictStr | None = None
    provider: StrictStr | Annotated[list[StrictStr], Field(min_length=1)] | None = Field(
        None, description="llmplex: a provider name, or a list tried in order."
    )


def install_embeddings(
    router: APIRouter,
    client: AsyncClient,
    *,
    max_providers: int,
    responses: dict[int | str, Any],
    keys: Any = None,
) -> None:
    """Add ``POST /embeddings`` to ``router`` (the ``/v1`` one, with its auth);
    ``keys``: the server's :class:`~llmplex.server.keys.KeyRing` (model, limits)."""
    from .keys import KeyRing

    ring = keys if keys is not None else KeyRing()

    @router.post("/embeddings", tags=["embeddings"], responses=responses)
    async def create_embeddings(body: EmbeddingRequest, request: Request) -> Any:
        """Create embeddings of ``input`` (a string, strings, or token arrays)."""
        if not body.model:
            raise APIError(
                400,
                "you must provide a model parameter",
                param="model",
                code="missing_required_parameter",
            )
        check_provider_list(body.provider, max_providers)
        caller = await ring.admit(request.headers, body.model, provider=body.provider)
        watcher = asyncio.ensure_future(disconnected(request.receive))
        try:
            result = await unless_gone(
                watcher, client.embeddings.create(**body.model_dump(exclude_none=True))
            )
        except ClientGone:
            log.info("client went away before the answer; upstream request cancelled")
            return Response(status_code=499)
        finally:
            watcher.cancel()
        if result.usage is not None:
            await ring.record_usage(caller, result.usage.total_tokens)
        return JSONResponse(result.model_dump())
