"""The Echo provider: ``POST {base}/v1/echo`` with the key in ``X-Echo-Key`` and a JSON
body ``{"model", "messages", "max_words"}``; the answer is newline-delimited JSON, one
``{"delta": text}`` per piece, then ``{"done": true, "finish": "stop" | "length"}`` (or
``{"error": message}``)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from typing import Any, ClassVar

from llmplex.errors import MissingAuthError, ResponseError, StreamError
from llmplex.http.session import DEFAULT_TIMEOUT, Session
from llmplex.providers.base import AsyncGeneratorProvider, ProviderModelMixin
from llmplex.types import Chunk, FinishReason, Messages

from .spec import KEY_ENV, SPEC

__all__ = ["Echo"]


class Echo(AsyncGeneratorProvider, ProviderModelMixin):
    """The Echo service: answers with the last user message (an example of a plugin)."""

    # the class takes its facts from its spec: one place for them
    label = SPEC.label
    url = SPEC.base_url
    working = True
    needs_auth = True
    capabilities = SPEC.capabilities or AsyncGeneratorProvider.capabilities
    default_model = SPEC.models[0]
    models: ClassVar[list[str]] = list(SPEC.models)
    model_aliases: ClassVar[dict[str, str]] = dict(SPEC.aliases)

    @classmethod
    def why_not_working(cls, options: Mapping[str, Any] | None = None) -> str | None:
        """None when a key is configured (``api_key`` or ``ECHO_API_KEY``), else why not."""
        if (options or {}).get("api_key") or os.environ.get(KEY_ENV):
            return None
        return f"no API key: set {KEY_ENV} or api_key under [providers.Echo]"

    @classmethod
    async def create_async_generator(
        cls,
        model: str,
        messages: Messages,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        proxy: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        max_words: int | None = None,
        **kwargs: Any,  # refused: see reject_unknown
    ) -> AsyncIterator[Chunk]:
        """Stream the echo, then a ``FinishReason``. ``max_words`` bounds the answer."""
        cls.reject_unknown(kwargs)
        key = api_key or os.environ.get(KEY_ENV)
        if not key:
            raise MissingAuthError(
                f"no API key: pass api_key= or set {KEY_ENV}", provider=cls.get_name()
            )
        body: dict[str, Any] = {
            "model": cls.get_model(model),
            "messages": [dict(m) for m in messages],
        }
        if max_words is not None:
            body["max_words"] = max_words
        url = cls.resolve_base_url(base_url, SPEC.base_url) + "/v1/echo"
        async with (
            Session(
                cls.get_name(), proxy=proxy, timeout=timeout, headers={"X-Echo-Key": key}
            ) as session,
            session.request("POST", url, json=body) as response,
        ):
            async for event in session.ndjson(response):
                if not isinstance(event, dict):
                    raise ResponseError(f"not an object: {event!r:.100}", provider=cls.get_name())
                if "error" in event:
                    raise StreamError(str(event["error"]), provider=cls.get_name())
                if event.get("done"):
                    yield FinishReason(str(event.get("finish") or "stop"))
                    return
                delta = event.get("delta")
                if isinstance(delta, str) and delta:
                    yield delta
        raise ResponseError(
            "the stream ended before the answer was complete", provider=cls.get_name()
        )
