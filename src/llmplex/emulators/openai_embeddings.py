"""What the OpenAI emulator answers at ``POST /v1/embeddings`` (pure functions).

Vectors are deterministic: each input's (text, or token array) SHA-256 seeds a Gaussian
vector of the model's native size (:data:`NATIVE_DIMENSIONS`: 1536 for
``text-embedding-3-small`` and ``text-embedding-ada-002``, 3072 for
``text-embedding-3-large``, 768 for other names), scaled to unit length. ``dimensions``
shortens it as OpenAI's ``text-embedding-3`` models do: the first ``dimensions`` values,
scaled to unit length again (other models refuse ``dimensions``). ``encoding_format:
"base64"`` sends each vector as the base64 of its little-endian float32 values. A token is
a whitespace-separated word of a string input, or one entry of a token array.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import random
import struct
from typing import Any

__all__ = ["EMBEDDING_PARAMETERS", "NATIVE_DIMENSIONS", "check", "embeddings", "vector"]

#: body fields OpenAI's Embeddings API takes
EMBEDDING_PARAMETERS = frozenset({"input", "model", "dimensions", "encoding_format", "user"})
NATIVE_DIMENSIONS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
_DEFAULT_DIMENSIONS = 768
_INVALID_INPUT = (
    "'$.input' is invalid. Please check the API reference: "
    "https://platform.openai.com/docs/api-reference."
)
#: the most inputs one request may carry (OpenAI's limit)
MAX_INPUTS = 2048


def _tokens(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in value)
    )


def _inputs(value: Any) -> list[str | list[int]] | None:
    """The inputs of ``input``, or None when it is not a valid one."""
    if isinstance(value, str):
        return [value] if value else None
    if _tokens(value):
        return [value]
    if (
        isinstance(value, list)
        and value
        and len(value) <= MAX_INPUTS
        and (all(isinstance(v, str) and v for v in value) or all(_tokens(v) for v in value))
    ):
        return list(value)
    return None


def check(body: Any, strict: bool) -> tuple[str, str | None, str | None] | None:
    """``(message, param, code)`` of the 400 OpenAI answers for a bad body, or None."""
    if not isinstance(body, dict):
        return ("We could not parse the JSON body of your request.", None, None)
    if strict:
        unknown = sorted(k for k in body if k not in EMBEDDING_PARAMETERS)
        if unknown:
            plural = "s" if len(unknown) > 1 else ""
            return (
                f"Unrecognized request argument{plural} supplied: {', '.join(unknown)}",
                None,
                None,
            )
    if "model" not in body:
        return ("you must provide a model parameter", None, None)
    if not isinstance(body["model"], str):
        return ("Invalid type for 'model': expected a string.", "model", "invalid_type")
    if "input" not in body:
        return ("Missing required parameter: 'input'.", "input", "missing_required_parameter")
    if _inputs(body["input"]) is None:
        return (_INVALID_INPUT, None, None)
    fmt = body.get("encoding_format")
    if fmt is not None and fmt not in ("float", "base64"):
        return (
            f"Invalid value: {fmt!r}. Supported values are: 'float' and 'base64'.",
            "encoding_format",
            "invalid_value",
        )
    dimensions = body.get("dimensions")
    if dimensions is not None:
        if isinstance(dimensions, bool) or not isinstance(dimensions, int):
            return (
                "Invalid type for 'dimensions': expected an integer.",
                "dimensions",
                "invalid_type",
            )
        model = body["model"]
        if not model.startswith("text-embedding-3"):
            return ("This model does not support specifying dimensions.", None, None)
        native = NATIVE_DIMENSIONS.get(model, _DEFAULT_DIMENSIONS)
        if not 1 <= dimensions <= native:
            message = (
                f"Invalid value for 'dimensions': {dimensions}. It must be between 1 and {native}."
            )
            return (message, "dimensions", "invalid_value")
    return None


def vector(model: str, item: str | list[int], dimensions: int | None = None) -> list[float]:
    """The unit vector of one input (see the module docstring)."""
    native = NATIVE_DIMENSIONS.get(model, _DEFAULT_DIMENSIONS)
    key = item if isinstance(item, str) else json.dumps(item)
    rng = random.Random(hashlib.sha256(key.encode("utf-8")).digest())
    values = [rng.gauss(0.0, 1.0) for _ in range(native)][: dimensions or native]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    # float32 values, as the API's are (and as base64 carries them)
    return [struct.unpack("<f", struct.pack("<f", v / norm))[0] for v in values]


def _count(item: str | list[int]) -> int:
    return len(item.split()) if isinstance(item, str) else len(item)


def embeddings(body: dict[str, Any]) -> dict[str, Any]:
    """The ``CreateEmbeddingResponse`` for a checked body."""
    model = body["model"]
    items = _inputs(body["input"]) or []
    dimensions = body.get("dimensions")
    as_base64 = body.get("encoding_format") == "base64"
    data = []
    for index, item in enumerate(items):
        values = vector(model, item, dimensions)
        embedding: list[float] | str = (
            base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()
            if as_base64
            else values
        )
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    tokens = sum(_count(item) for item in items)
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
