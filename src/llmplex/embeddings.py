"""Embeddings: ``client.embeddings.create(model=..., input=...)``, OpenAI's Embeddings API.

>>> result = await client.embeddings.create(model="text-embedding-3-small", input="Hi")
>>> result.data[0].embedding[:3]

Served by the OpenAI-compatible providers that have an embeddings API
(:attr:`~llmplex.providers.endpoints.Endpoint.embeddings`): a bare model name goes to the
providers that list it (``text-embedding-3-small``: OpenAI; ``mistral-embed``: Mistral),
the configured ones first; ``provider:model`` names one (``ollama:nomic-embed-text``: a
local server serves the models it has loaded). A provider without embeddings (AllenAI,
Groq...) is an :class:`~llmplex.errors.InvalidRequestError` naming it and those that have.

The request is forwarded as given (``input`` a string, a list of strings, a token array or
a list of token arrays; ``dimensions``, ``encoding_format``, ``user``, ``extra_body``) and
the service's answer returned as it is, in OpenAI's shape (``encoding_format="base64"``:
each ``embedding`` is the base64 string the service sent).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .errors import (
    AllProvidersFailed,
    InvalidRequestError,
    ModelNotFoundError,
    ResponseError,
)
from .objects import _Object

if TYPE_CHECKING:  # pragma: no cover
    from .client import AsyncClient
    from .routing import Route

__all__ = [
    "AsyncEmbeddings",
    "CreateEmbeddingResponse",
    "Embedding",
    "EmbeddingUsage",
    "embedding_providers",
]

ENCODING_FORMATS = ("float", "base64")
#: options that choose where the call goes: for a call that names one provider only
_ROUTE_OPTIONS = frozenset({"api_key", "base_url", "headers", "proxy"})


class Embedding(_Object):
    """One input's vector: a list of floats, or a base64 string (``encoding_format``)."""

    __slots__ = ("object", "index", "embedding")

    def __init__(self, index: int, embedding: list[float] | str, object: str = "embedding") -> None:
        self.object = object
        self.index = index
        self.embedding = embedding


class EmbeddingUsage(_Object):
    __slots__ = ("prompt_tokens", "total_tokens")

    def __init__(self, prompt_tokens: int = 0, total_tokens: int = 0) -> None:
        self.prompt_tokens = prompt_tokens
        self.total_tokens = total_tokens


class CreateEmbeddingResponse(_Object):
    """The answer: ``data`` (one :class:`Embedding` per input, in order), ``model``,
    ``usage``, and llmplex's ``provider`` (who answered)."""

    __slots__ = ("object", "data", "model", "usage", "provider")

    def __init__(
        self,
        data: list[Embedding],
        model: str,
        usage: EmbeddingUsage | None,
        provider: str,
        object: str = "list",
    ) -> None:
        self.object = object
        self.data = data
        self.model = model
        self.usage = usage
        self.provider = provider

    @classmethod
    def from_wire(
        cls, data: Mapping[str, Any], model: str, provider: str
    ) -> CreateEmbeddingResponse:
        items = []
        for i, item in enumerate(data.get("data") or ()):
            if not isinstance(item, Mapping) or not isinstance(item.get("embedding"), (list, str)):
                raise ResponseError(
                    f"invalid embeddings answer: data[{i}] has no embedding", provider=provider
                )
            index = item.get("index")
            items.append(Embedding(index if isinstance(index, int) else i, item["embedding"]))
        usage = data.get("usage")
        counted = (
            EmbeddingUsage(
                int(usage.get("prompt_tokens") or 0), int(usage.get("total_tokens") or 0)
            )
            if isinstance(usage, Mapping)
            else None
        )
        return cls(items, str(data.get("model") or model), counted, provider)


def embedding_providers() -> list[type[Any]]:
    """Every provider class with an embeddings API."""
    from .providers import all_providers

    return [cls for cls in all_providers() if getattr(cls, "embeddings", False)]


def _check_input(value: Any) -> None:
    """``input``: a non-empty string, list of strings, token array or list of them."""

    def tokens(v: Any) -> bool:
        return (
            isinstance(v, list)
            and bool(v)
            and all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in v)
        )

    if isinstance(value, str):
        ok = bool(value)
    elif isinstance(value, list) and value:
        ok = (
            all(isinstance(v, str) and v for v in value)
            or tokens(value)
            or all(tokens(v) for v in value)
        )
    else:
        ok = False
    if not ok:
        raise InvalidRequestError(
            "input must be a non-empty string, a list of non-empty strings, an array of "
            "tokens (non-negative integers) or a list of token arrays",
            param="input",
        )


class AsyncEmbeddings:
    """``client.embeddings``."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    def _routes(self, model: str, provider: Any) -> list[Route]:
        from .providers import get_provider
        from .routing import Route

        client = self._client
        prefix, rest = client.router._split_prefix(model)
        if provider is not None:
            names = provider if isinstance(provider, (list, tuple)) else [provider]
            classes = [get_provider(n) if isinstance(n, str) else n for n in names]
            if prefix is not None and prefix not in classes:
                raise InvalidRequestError(
                    f"model {model!r} names provider {prefix.get_name()} but provider="
                    f"{', '.join(c.get_name() for c in classes)} was given",
                    param="model",
                )
            routes = [Route(cls, rest, named=True) for cls in classes]
        else:
            if prefix is not None:
                routes = [Route(prefix, rest, named=True)]
            else:
                routes = [
                    Route(cls, model)
                    for cls in embedding_providers()
                    if model in getattr(cls, "embedding_models", ())
                ]
                if not routes:
                    known = [
                        m
                        for cls in embedding_providers()
                        for m in getattr(cls, "embedding_models", ())
                    ]
                    near = difflib.get_close_matches(model, known, n=5, cutoff=0.5)
                    hint = f" Did you mean: {', '.join(near)}?" if near else ""
                    raise ModelNotFoundError(
                        f"no provider lists embedding model {model!r}.{hint} Use "
                        "'provider:model' for one a provider serves but does not list.",
                        suggestions=near,
                    )
                # the providers the user configured first
                routes.sort(key=lambda r: not client.configured(r.provider))
        for route in routes:
            if not getattr(route.provider, "embeddings", False):
                having = ", ".join(
                    cls.get_name()
                    for cls in embedding_providers()
                    if cls.get_name() != "OpenAICompatible"
                )
                raise InvalidRequestError(
                    f"no embeddings API; embeddings are served by {having}",
                    param="model",
                    provider=route.name,
                )
        return client._reachable(routes)

    async def create(
        self,
        *,
        model: str,
        input: Any,
        dimensions: int | None = None,
        encoding_format: str | None = None,
        user: str | None = None,
        provider: Any = None,
        extra_body: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        **options: Any,
    ) -> CreateEmbeddingResponse:
        """Embed ``input`` with ``model`` (see the module docstring).

        ``api_key``, ``base_url``, ``headers`` and ``proxy`` apply to a call that names one
        provider; otherwise every provider uses its own configuration. When several
        providers list a bare model name, the next is tried after one fails (the errors
        together in :class:`~llmplex.errors.AllProvidersFailed`)."""
        if not isinstance(model, str) or not model:
            raise InvalidRequestError(
                "model is required (an embedding model, e.g. 'text-embedding-3-small')",
                param="model",
            )
        _check_input(input)
        if dimensions is not None and (
            isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions < 1
        ):
            raise InvalidRequestError("dimensions must be a positive integer", param="dimensions")
        if encoding_format is not None and encoding_format not in ENCODING_FORMATS:
            raise InvalidRequestError(
                f"encoding_format must be 'float' or 'base64', not {encoding_format!r}",
                param="encoding_format",
            )
        unknown = sorted(set(options) - _ROUTE_OPTIONS)
        if unknown:
            near = difflib.get_close_matches(
                unknown[0],
                [
                    "model",
                    "input",
                    "dimensions",
                    "encoding_format",
                    "user",
                    "provider",
                    "extra_body",
                    "timeout",
                    *_ROUTE_OPTIONS,
                ],
                n=1,
            )
            raise InvalidRequestError(
                f"unknown argument {unknown[0]!r}"
                + (f"; did you mean {near[0]!r}?" if near else ""),
                param=unknown[0],
                suggestions=near,
            )
        routes = self._routes(model, provider)
        if options and (len(routes) > 1 or not routes[0].named):
            raise InvalidRequestError(
                f"{next(iter(options))} applies to one provider: name it "
                "('provider:model' or provider=)",
                param=next(iter(options)),
            )
        client = self._client
        errors: list[tuple[str, BaseException]] = []
        for route in routes:
            kwargs: dict[str, Any] = dict(client.provider_options.get(route.name.lower(), ()))
            for key in [
                k for k in kwargs if k not in ("api_key", "base_url", "headers", "proxy", "timeout")
            ]:
                kwargs.pop(key)  # chat options (system_prompt...) are not embeddings'
            kwargs.update(options)
            if client.proxy is not None:
                kwargs.setdefault("proxy", client.proxy)
            if timeout or client.timeout:
                kwargs["timeout"] = timeout or client.timeout
            try:
                data = await route.provider.create_embeddings(  # type: ignore[attr-defined]
                    route.model,
                    input,
                    dimensions=dimensions,
                    encoding_format=encoding_format,
                    user=user,
                    extra_body=extra_body,
                    **kwargs,
                )
            except InvalidRequestError:
                raise
            except Exception as exc:
                if len(routes) == 1:
                    raise
                errors.append((route.name, exc))
                continue
            return CreateEmbeddingResponse.from_wire(data, route.model, route.name)
        raise AllProvidersFailed(errors, model)
