"""The one typed chat request, built and validated once at the edge.

``AsyncClient.chat.completions.create(...)`` and the server's routes build a
:class:`ChatRequest` from their arguments. Every OpenAI Chat Completions field is checked
here (type and range) and then either honoured by the route that serves it or refused with
:class:`~llmplex.errors.InvalidRequestError` (``param`` set) naming the field and the
providers that would take it. An unknown keyword is an error with a did-you-mean.

Three kinds of arguments:

- **fields**: OpenAI's (``temperature``, ``tools``, ``response_format``...) and the options
  individual providers declare (``top_k``, ``system_prompt``...); sent to the provider.
- **route options**: ``api_key``, ``base_url``, ``cookies``, ``headers``, ``proxy``. They
  belong to one provider, so they are taken only when the call names exactly one provider;
  in a fallback chain every route uses its own configuration.
- **llmplex's**: ``provider``, ``conversation``, ``timeout``, ``stream``, ``emulate``
  (whether tool calls and ``response_format`` may be emulated through the prompt on a
  route whose service lacks them: :mod:`llmplex.emulation`; ``None`` is the router's
  setting).
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .errors import InvalidRequestError
from .prompt import message_features, validate_messages

__all__ = ["ChatRequest", "OPENAI_FIELDS", "ROUTE_OPTIONS", "TOOL_FIELDS", "known_names"]

#: per-call options that choose where and as whom a provider is called
ROUTE_OPTIONS = ("api_key", "base_url", "cookies", "headers", "proxy")
#: fields that need tool support
TOOL_FIELDS = frozenset(
    {"tools", "tool_choice", "parallel_tool_calls", "functions", "function_call"}
)
#: fields every route takes: enforced by the client where the service does not
LIMIT_FIELDS = frozenset({"max_tokens", "max_completion_tokens", "stop"})

_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def _bad(param: str, message: str) -> InvalidRequestError:
    return InvalidRequestError(f"{param}: {message}", param=param)


def _number(low: float, high: float) -> Callable[[str, Any], None]:
    def check(name: str, value: Any) -> None:
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not (math.isfinite(value) and low <= value <= high)
        ):
            raise _bad(name, f"expected a number from {low:g} to {high:g}, got {value!r}")

    return check


def _integer(low: int, high: int | None = None) -> Callable[[str, Any], None]:
    def check(name: str, value: Any) -> None:
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or value < low
            or (high is not None and value > high)
        ):
            span = f"from {low} to {high}" if high is not None else f">= {low}"
            raise _bad(name, f"expected an integer {span}, got {value!r}")

    return check


def _of(*types: type, what: str) -> Callable[[str, Any], None]:
    def check(name: str, value: Any) -> None:
        if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
            raise _bad(name, f"expected {what}, got {type(value).__name__}")

    return check


def _choice(*values: str) -> Callable[[str, Any], None]:
    def check(name: str, value: Any) -> None:
        if value not in values:
            raise _bad(name, f"expected one of {', '.join(values)}, got {value!r}")

    return check


def _stop(name: str, value: Any) -> None:
    if isinstance(value, str):
        return
    if not (isinstance(value, Sequence) and all(isinstance(s, str) for s in value)):
        raise _bad(name, "expected a string or a list of strings")
    if len(value) > 4:
        raise _bad(name, f"at most 4 stop sequences, got {len(value)}")


def _logit_bias(name: str, value: Any) -> None:
    if not isinstance(value, Mapping):
        raise _bad(name, "expected an object mapping token ids to biases")
    for token, bias in value.items():
        if (
            not str(token).isdigit()
            or isinstance(bias, bool)
            or not isinstance(bias, (int, float))
            or not -100 <= bias <= 100
        ):
            raise _bad(f"{name}.{token}", "a token id (digits) mapped to a number from -100 to 100")


def _tools(name: str, value: Any) -> None:
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise _bad(name, "expected a list of tools")
    for i, tool in enumerate(value):
        where = f"{name}[{i}]"
        if not isinstance(tool, Mapping) or tool.get("type") not in ("function", "custom"):
            raise _bad(f"{where}.type", "a tool is {'type': 'function', 'function': {...}}")
        if tool["type"] == "custom":
            custom = tool.get("custom")
            if not isinstance(custom, Mapping) or not isinstance(custom.get("name"), str):
                raise _bad(f"{where}.custom.name", "a custom tool needs a name")
            continue
        function = tool.get("function")
        if not isinstance(function, Mapping):
            raise _bad(f"{where}.function", "missing the function definition")
        fname = function.get("name")
        if not isinstance(fname, str) or not _TOOL_NAME.match(fname):
            raise _bad(
                f"{where}.function.name",
                f"a name of 1 to 64 letters, digits, _ or -, got {fname!r}",
            )
        parameters = function.get("parameters")
        if parameters is not None and not isinstance(parameters, Mapping):
            raise _bad(f"{where}.function.parameters", "a JSON Schema object")
        strict = function.get("strict")
        if strict is not None and not isinstance(strict, bool):
            raise _bad(f"{where}.function.strict", "a boolean")


def _tool_choice(name: str, value: Any) -> None:
    if value in ("none", "auto", "required"):
        return
    if isinstance(value, Mapping):
        kind = value.get("type")
        if kind == "function" and isinstance((value.get("function") or {}).get("name"), str):
            return
        if kind in ("allowed_tools", "custom"):
            return
    raise _bad(
        name,
        "expected 'none', 'auto', 'required' or {'type': 'function', 'function': {'name': ...}}",
    )


def _response_format(name: str, value: Any) -> None:
    kind = value.get("type") if isinstance(value, Mapping) else None
    if kind in ("text", "json_object"):
        return
    if kind == "json_schema":
        spec = value.get("json_schema")
        if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
            raise _bad(f"{name}.json_schema", "needs a 'name' (and a 'schema')")
        if spec.get("schema") is not None and not isinstance(spec["schema"], Mapping):
            raise _bad(f"{name}.json_schema.schema", "a JSON Schema object")
        return
    raise _bad(f"{name}.type", f"expected 'text', 'json_object' or 'json_schema', got {kind!r}")


def _metadata(name: str, value: Any) -> None:
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise _bad(name, "expected an object of strings")


def _stream_options(name: str, value: Any) -> None:
    if not isinstance(value, Mapping):
        raise _bad(name, "expected an object")
    for key, item in value.items():
        if key not in ("include_usage", "include_obfuscation"):
            raise _bad(f"{name}.{key}", "unknown stream option")
        if not isinstance(item, bool):
            raise _bad(f"{name}.{key}", "expected a boolean")


_object = _of(Mapping, what="an object")
_string = _of(str, what="a string")
_boolean = _of(bool, what="a boolean")

#: every Chat Completions field OpenAI defines (besides model, messages, stream), checked
OPENAI_FIELDS: dict[str, Callable[[str, Any], None]] = {
    "temperature": _number(0, 2),
    "top_p": _number(0, 1),
    "presence_penalty": _number(-2, 2),
    "frequency_penalty": _number(-2, 2),
    "max_tokens": _integer(1),
    "max_completion_tokens": _integer(1),
    "n": _integer(1, 128),
    "seed": _integer(-(2**63), 2**63 - 1),
    "stop": _stop,
    "logprobs": _boolean,
    "top_logprobs": _integer(0, 20),
    "logit_bias": _logit_bias,
    "tools": _tools,
    "tool_choice": _tool_choice,
    "parallel_tool_calls": _boolean,
    "functions": _of(list, tuple, what="a list of functions"),
    "function_call": _of(str, Mapping, what="'none', 'auto' or {'name': ...}"),
    "response_format": _response_format,
    "reasoning_effort": _string,
    "service_tier": _string,
    "user": _string,
    "safety_identifier": _string,
    "prompt_cache_key": _string,
    "metadata": _metadata,
    "store": _boolean,
    "modalities": _of(list, tuple, what="a list of 'text'/'audio'"),
    "audio": _object,
    "prediction": _object,
    "verbosity": _choice("low", "medium", "high"),
    "web_search_options": _object,
    "stream_options": _stream_options,
    "extra_body": _object,
}

#: llmplex's own arguments of create() (checked by the client)
_LLMPLEX = (
    "model",
    "messages",
    "stream",
    "provider",
    "conversation",
    "timeout",
    "first_token_timeout",
    "total_timeout",
    "emulate",
)


def known_names() -> list[str]:
    """Every keyword ``create()`` takes: OpenAI's fields, llmplex's, and every option a
    registered provider declares."""
    from .providers import provider_option_names

    return sorted({*OPENAI_FIELDS, *_LLMPLEX, *ROUTE_OPTIONS, *provider_option_names()})


class ChatRequest:
    """One validated chat request.

    ``fields`` holds the generation fields as given (OpenAI's and provider options), only
    those set; ``route_options`` the per-call ``api_key``/``base_url``/... ; ``needs`` the
    capabilities the request needs (``tools``, ``images``, ``json_schema``, ``n``...), each
    with the ``param`` that needs it.
    """

    __slots__ = ("model", "messages", "fields", "route_options", "needs", "stream", "emulate")

    def __init__(
        self,
        model: str | None,
        messages: list[Mapping[str, Any]],
        fields: dict[str, Any],
        route_options: dict[str, Any],
        needs: dict[str, str],
        stream: bool = False,
        emulate: bool | None = None,
    ) -> None:
        self.model = model
        self.messages = messages
        self.fields = fields
        self.route_options = route_options
        self.needs = needs
        self.stream = stream
        #: may tools / response_format be emulated (None: as the router is configured)
        self.emulate = emulate

    @classmethod
    def build(
        cls,
        model: str | None,
        messages: Any,
        *,
        stream: bool = False,
        emulate: bool | None = None,
        **kwargs: Any,
    ) -> ChatRequest:
        """Validate the arguments of one ``create()`` call (``None`` values are unset)."""
        if emulate is not None and not isinstance(emulate, bool):
            raise _bad("emulate", f"expected true or false, got {type(emulate).__name__}")
        checked = validate_messages(messages)
        fields: dict[str, Any] = {}
        route: dict[str, Any] = {}
        provider_options: frozenset[str] | None = None
        for name, value in kwargs.items():
            if value is None:
                continue
            check = OPENAI_FIELDS.get(name)
            if check is not None:
                check(name, value)
                fields[name] = value
            elif name in ROUTE_OPTIONS:
                route[name] = value
            else:
                if provider_options is None:
                    from .providers import provider_option_names

                    provider_options = provider_option_names()
                if name not in provider_options:
                    raise unknown_option(name)
                fields[name] = value
        if "stream_options" in fields and not stream:
            raise _bad("stream_options", "only allowed when stream is true")
        if "top_logprobs" in fields and not fields.get("logprobs"):
            raise _bad("top_logprobs", "needs logprobs: true")
        if "tool_choice" in fields and isinstance(fields["tool_choice"], Mapping):
            wanted = (fields["tool_choice"].get("function") or {}).get("name")
            names = {(t.get("function") or {}).get("name") for t in fields.get("tools") or ()}
            if wanted is not None and wanted not in names:
                raise _bad("tool_choice", f"names function {wanted!r}, which is not in tools")
        return cls(model, checked, fields, route, _needs(checked, fields), stream, emulate)

    def kwargs_for(
        self, native_max_tokens: bool, native_stop: bool, accepted: frozenset[str]
    ) -> dict[str, Any]:
        """The fields to pass to a provider: limits it does not enforce are left to the
        client, and ``max_completion_tokens`` becomes ``max_tokens`` for a provider that
        knows only that name."""
        fields = self.fields
        if not (LIMIT_FIELDS.intersection(fields)):
            return dict(fields)
        out = dict(fields)
        if "max_completion_tokens" in out and "max_completion_tokens" not in accepted:
            out.setdefault("max_tokens", out.pop("max_completion_tokens"))
        if not native_max_tokens:
            out.pop("max_tokens", None)
            out.pop("max_completion_tokens", None)
        if not native_stop:
            out.pop("stop", None)
        return out

    @property
    def max_tokens(self) -> int | None:
        """The output limit asked for (``max_completion_tokens`` or ``max_tokens``)."""
        return self.fields.get("max_completion_tokens") or self.fields.get("max_tokens")

    def __repr__(self) -> str:  # route options may hold keys: only their names are shown
        return (
            f"ChatRequest(model={self.model!r}, messages=<{len(self.messages)}>, "
            f"fields={sorted(self.fields)}, route_options={sorted(self.route_options)})"
        )


def unknown_option(name: str) -> InvalidRequestError:
    """The error for a keyword no part of llmplex knows, with close matches."""
    suggestions = difflib.get_close_matches(name, known_names(), n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(map(repr, suggestions))}?" if suggestions else ""
    return InvalidRequestError(
        f"unknown argument {name!r}{hint} (vendor fields for OpenAI-compatible services go "
        "in extra_body)",
        param=name,
        suggestions=suggestions,
    )


def _needs(messages: Sequence[Mapping[str, Any]], fields: Mapping[str, Any]) -> dict[str, str]:
    """Capability -> the param that needs it."""
    needs = message_features(messages)
    if not fields:
        return needs
    for name in TOOL_FIELDS.intersection(fields):
        if name == "tool_choice" and fields[name] == "none" and "tools" not in fields:
            continue
        needs.setdefault("tools", name)
    response_format = fields.get("response_format")
    if response_format and response_format.get("type") in ("json_object", "json_schema"):
        needs[response_format["type"]] = "response_format"
    if "reasoning_effort" in fields:
        needs["reasoning"] = "reasoning_effort"
    if fields.get("n", 1) > 1:
        needs["n"] = "n"
    if fields.get("logprobs") or "top_logprobs" in fields:
        needs["logprobs"] = "logprobs"
    if "audio" in fields or "audio" in (fields.get("modalities") or ()):
        needs.setdefault("audio", "audio" if "audio" in fields else "modalities")
    return needs
