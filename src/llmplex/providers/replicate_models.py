"""What Replicate's language models take: their input and output schemas, as data.

Every model on Replicate declares its inputs in an OpenAPI schema (``GET
/v1/models/{owner}/{name}`` → ``latest_version.openapi_schema``: ``components.schemas.Input``
and ``Output``), and the families name the same things differently (PROTOCOLS.md §4, "in
2026"). :class:`ModelSchema` is one model's schema as llmplex reads it: which inputs exist,
whether the model streams. :data:`FAMILIES` holds the schemas of the models llmplex knows
(as Replicate published them), for answers that cannot wait for a request — the capabilities
routing asks for synchronously — and for the emulator to serve.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from ..capabilities import TEXT_ONLY, Capabilities

__all__ = ["FAMILIES", "STREAMING_OUTPUT", "ModelSchema", "openapi_schema", "version_id"]

#: the Output schema of a model that streams (tokens, joined by concatenation)
STREAMING_OUTPUT: dict[str, Any] = {
    "type": "array",
    "items": {"type": "string"},
    "title": "Output",
    "x-cog-array-type": "iterator",
    "x-cog-array-display": "concatenate",
}
_STRING_OUTPUT: dict[str, Any] = {"type": "string", "title": "Output"}


def _int(
    default: int | None = None, minimum: int | None = None, maximum: int | None = None
) -> dict[str, Any]:
    return _prop("integer", default, minimum, maximum)


def _num(
    default: float | None = None, minimum: float | None = None, maximum: float | None = None
) -> dict[str, Any]:
    return _prop("number", default, minimum, maximum)


def _prop(
    kind: str, default: Any = None, minimum: float | None = None, maximum: float | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {"type": kind}
    for key, value in (("default", default), ("minimum", minimum), ("maximum", maximum)):
        if value is not None:
            out[key] = value
    return out


def _str(default: str | None = None, **more: Any) -> dict[str, Any]:
    return {**_prop("string", default), **more}


def _enum(default: str, *values: str) -> dict[str, Any]:
    return {"type": "string", "enum": list(values), "default": default}


_SAMPLING = {"temperature": _num(0.6, 0, 5), "top_p": _num(0.9, 0, 1), "top_k": _int(50, 0)}
_PENALTIES = {"presence_penalty": _num(0.0), "frequency_penalty": _num(0.0)}
_LLAMA3_TEMPLATE = (
    "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a helpful "
    "assistant<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n{prompt}<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n"
)
_LLAMA3 = {
    "prompt": _str(""),
    "max_tokens": _int(512, 1),
    "min_tokens": _int(0, 0),
    **_SAMPLING,
    **_PENALTIES,
    "prompt_template": _str(_LLAMA3_TEMPLATE),
}
_LLAMA2 = {
    "prompt": _str(),
    "system_prompt": _str("You are a helpful assistant."),
    "max_new_tokens": _int(128, 1),
    "min_new_tokens": _int(-1, -1),
    **_SAMPLING,
    "repetition_penalty": _num(1.15, 0),
    "stop_sequences": _str(),
    "seed": _int(),
}
_IMAGES = {"type": "array", "items": {"type": "string", "format": "uri"}, "default": []}
_MESSAGES = {"type": "array", "items": {"type": "object"}, "default": []}

#: model -> (Input properties, required inputs, Output schema), as Replicate lists them
FAMILIES: dict[str, tuple[dict[str, Any], tuple[str, ...], dict[str, Any]]] = {
    "meta/meta-llama-3-70b-instruct": (_LLAMA3, (), STREAMING_OUTPUT),
    "meta/meta-llama-3-8b-instruct": (_LLAMA3, (), STREAMING_OUTPUT),
    "meta/meta-llama-3.1-405b-instruct": (
        {
            **_LLAMA3,
            "system_prompt": _str("You are a helpful assistant."),
            "stop_sequences": _str(),
        },
        (),
        STREAMING_OUTPUT,
    ),
    "mistralai/mixtral-8x7b-instruct-v0.1": (
        {
            "prompt": _str(),
            "system_prompt": _str(""),
            "max_new_tokens": _int(512, 1),
            "min_new_tokens": _int(-1, -1),
            **_SAMPLING,
            **_PENALTIES,
            "prompt_template": _str("<s>[INST] {prompt} [/INST] "),
        },
        ("prompt",),
        STREAMING_OUTPUT,
    ),
    "anthropic/claude-4-sonnet": (
        {
            "prompt": _str(),
            "system_prompt": _str(""),
            "max_tokens": _int(8192, 1024, 64000),
            "image": _str(format="uri"),
            "extended_thinking": _prop("boolean", False),
            "thinking_budget_tokens": _int(1024, 1024, 64000),
            "max_image_resolution": _num(0.5, 0.001, 2),
        },
        ("prompt",),
        STREAMING_OUTPUT,
    ),
    "openai/gpt-5.1": (
        {
            "prompt": _str(),
            "messages": _MESSAGES,
            "system_prompt": _str(),
            "image_input": _IMAGES,
            "max_completion_tokens": _int(None, 1),
            "reasoning_effort": _enum("none", "none", "low", "medium", "high"),
            "verbosity": _enum("medium", "low", "medium", "high"),
        },
        (),
        STREAMING_OUTPUT,
    ),
    "openai/o4-mini": (
        {
            "prompt": _str(),
            "system_prompt": _str(),
            "image_input": _IMAGES,
            "max_completion_tokens": _int(4096, 1),
            "reasoning_effort": _enum("medium", "low", "medium", "high"),
        },
        (),
        _STRING_OUTPUT,
    ),
    "ibm-granite/granite-3.3-8b-instruct": (
        {
            "prompt": _str(""),
            "messages": _MESSAGES,
            "system_prompt": _str(),
            "max_tokens": _int(512, 1),
            "min_tokens": _int(0, 0),
            **_SAMPLING,
            **_PENALTIES,
            "stop": {"type": "array", "items": {"type": "string"}, "default": []},
            "seed": _int(),
            "tools": {"type": "array", "items": {"type": "object"}, "default": []},
            "documents": {"type": "array", "items": {"type": "object"}, "default": []},
            "thinking": _prop("boolean", False),
        },
        (),
        STREAMING_OUTPUT,
    ),
    "meta/llama-2-70b-chat": (_LLAMA2, ("prompt",), STREAMING_OUTPUT),
}


def openapi_schema(
    inputs: Mapping[str, Any],
    required: tuple[str, ...] = (),
    output: Mapping[str, Any] = STREAMING_OUTPUT,
) -> dict[str, Any]:
    """A version's ``openapi_schema`` with these Input properties and Output schema."""
    properties = {
        name: {**spec, "title": name.replace("_", " ").title(), "x-order": i}
        for i, (name, spec) in enumerate(inputs.items())
    }
    schema: dict[str, Any] = {"type": "object", "title": "Input", "properties": properties}
    if required:
        schema["required"] = list(required)
    return {
        "openapi": "3.0.2",
        "info": {"title": "Cog", "version": "0.1.0"},
        "paths": {},
        "components": {"schemas": {"Input": schema, "Output": dict(output)}},
    }


def version_id(openapi: Mapping[str, Any]) -> str:
    """A version id for a schema (64 hex digits, like Replicate's): its content hash."""
    return hashlib.sha256(json.dumps(openapi, sort_keys=True).encode()).hexdigest()


class ModelSchema:
    """One model version's schema: its ``inputs`` (name -> JSON schema), the ``required``
    ones, and whether its output ``streams``."""

    __slots__ = ("_capabilities", "inputs", "model", "openapi", "required", "streams", "version")

    def __init__(self, model: str, version: str | None, openapi: Mapping[str, Any]) -> None:
        components = openapi.get("components")
        schemas = components.get("schemas") if isinstance(components, Mapping) else None
        if not isinstance(schemas, Mapping) or not isinstance(schemas.get("Input"), Mapping):
            raise TypeError("no components.schemas.Input in the model's openapi_schema")
        found = schemas["Input"].get("properties")
        self.model = model
        self.version = version
        self.openapi = dict(openapi)
        self.inputs: dict[str, dict[str, Any]] = {
            str(k): dict(v) for k, v in (found or {}).items() if isinstance(v, Mapping)
        }
        self.required = frozenset(str(r) for r in schemas["Input"].get("required") or ())
        output = schemas.get("Output")
        self.streams = (
            isinstance(output, Mapping)
            and output.get("type") == "array"
            and (output.get("x-cog-array-type") == "iterator")
        )
        self._capabilities: Capabilities | None = None

    @classmethod
    def parse(cls, model: str, data: Mapping[str, Any]) -> ModelSchema:
        """From what Replicate answers or a caller passes: a model (``latest_version``),
        a version (``openapi_schema``, ``id``) or the ``openapi_schema`` itself."""
        if isinstance(data.get("latest_version"), Mapping):
            data = data["latest_version"]
        version = data.get("id") if isinstance(data.get("id"), str) else None
        if isinstance(data.get("openapi_schema"), Mapping):
            data = data["openapi_schema"]
        return cls(model, version, data)

    @classmethod
    def known(cls, model: str) -> ModelSchema | None:
        """The built-in schema of ``model`` (a family of :data:`FAMILIES`), if any."""
        found = _KNOWN.get(model)
        if found is None:
            family = FAMILIES.get(model.partition(":")[0])
            if family is None:
                return None
            openapi = openapi_schema(*family)
            found = _KNOWN[model] = cls(model, version_id(openapi), openapi)
        return found

    def first(self, *names: str) -> str | None:
        """The first of ``names`` the model takes."""
        return next((name for name in names if name in self.inputs), None)

    def capabilities(self) -> Capabilities:
        """What llmplex can do with this model (routing reads it, see
        :meth:`Replicate.capabilities_for`)."""
        if self._capabilities is not None:  # asked on every request: computed once
            return self._capabilities
        from .replicate_input import OPTION_INPUTS

        unsupported = {option for option, names in OPTION_INPUTS.items() if not self.first(*names)}
        self._capabilities = TEXT_ONLY.with_(
            system_message=True,
            tools="native" if "tools" in self.inputs else "none",
            images=bool(self.first("image", "image_input")),
            reasoning="reasoning_effort" in self.inputs,
            max_tokens=bool(self.first("max_tokens", "max_completion_tokens", "max_new_tokens")),
            stop=bool(self.first("stop_sequences", "stop")),
            unsupported=unsupported,
        )
        return self._capabilities


#: the built-in schemas made so far (ModelSchema.known), by model name
_KNOWN: dict[str, ModelSchema] = {}
