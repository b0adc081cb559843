"""llmplex's typed request as the input of one Replicate model (its own names).

:func:`build_input` is pure: the model's :class:`~.replicate_models.ModelSchema`, the
messages and the options in, the prediction's ``input`` out. What maps where:

========================  ================================================================
llmplex                   the model's input (the first one it has)
========================  ================================================================
the conversation          ``messages`` (OpenAI's shape) when the model takes them and there
                          is more than one question; else a rendered ``prompt``
system text               ``system_prompt``; else the system turn of the model's default
                          ``prompt_template`` (Llama 3's); else rendered into the prompt
``max_tokens``            ``max_tokens`` | ``max_completion_tokens`` | ``max_new_tokens``
``stop``                  ``stop_sequences`` (comma-joined) | ``stop`` (a list)
images (``image_url``)    ``image`` (one URI) | ``image_input`` (a list); http or data: URLs
``tools``                 ``tools`` (OpenAI's function tools), where the model has them
sampling, ``seed``...     the input of the same name (:data:`OPTION_INPUTS`)
``extra_data``            as given, each key an input of the model
========================  ================================================================

An option the model has no input for is an :class:`InvalidRequestError` naming the model's
inputs: Replicate ignores inputs a model does not declare, so sending it would drop it.
A value outside the schema's bounds or choices is refused the same way, before anything
is sent.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import InvalidRequestError
from ..prompt import validate_messages
from .replicate_models import ModelSchema

__all__ = ["OPTION_INPUTS", "build_input"]

#: option -> the inputs that take it (the first the model has)
OPTION_INPUTS: dict[str, tuple[str, ...]] = {
    "temperature": ("temperature",),
    "top_p": ("top_p",),
    "top_k": ("top_k",),
    "presence_penalty": ("presence_penalty",),
    "frequency_penalty": ("frequency_penalty",),
    "repetition_penalty": ("repetition_penalty",),
    "seed": ("seed",),
    "reasoning_effort": ("reasoning_effort",),
    "verbosity": ("verbosity",),
}
_MAX_TOKENS = ("max_tokens", "max_completion_tokens", "max_new_tokens")
_STOP = ("stop_sequences", "stop")
_IMAGE = ("image", "image_input")
_PROVIDER = "Replicate"


def build_input(
    schema: ModelSchema,
    messages: Any,
    options: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``input`` of a prediction of ``schema.model``. ``options`` holds the set options
    (``system_prompt``, ``max_tokens``, ``stop``, ``tools``, ``tool_choice``, sampling...)."""
    data: dict[str, Any] = {}
    items = validate_messages(messages)
    system = [options["system_prompt"]] if options.get("system_prompt") else []
    system += [_text(m, i) for i, m in enumerate(items) if m["role"] in ("system", "developer")]
    turns = [(i, m) for i, m in enumerate(items) if m["role"] not in ("system", "developer")]
    if not turns:  # only instructions: they are the question
        turns, system = (
            [(i, {"role": "user", "content": _text(m, i)}) for i, m in enumerate(items)],
            [],
        )
    several = len(turns) > 1 or any(m["role"] != "user" for _, m in turns)
    if several and "messages" in schema.inputs:
        data["messages"] = (
            [{"role": "system", "content": "\n".join(system)}] if system else []
        ) + [_message(m, i) for i, m in turns]
    else:
        images: list[tuple[str, str]] = []  # (URL, where it was)
        rendered = [(m["role"], _text(m, i, images)) for i, m in turns]
        template = _template_with(schema, "\n".join(system)) if system else None
        if system and "system_prompt" in schema.inputs:
            data["system_prompt"] = "\n".join(system)
        elif template is not None:
            data["prompt_template"] = template
        elif system:
            rendered.insert(0, ("system", "\n".join(system)))
        data[_need(schema, "prompt", option="messages")] = _render(rendered)
        if images:
            data.update(_images(schema, images))
    _limits(schema, options, data)
    _tools(schema, options, data)
    for option, names in OPTION_INPUTS.items():
        if options.get(option) is not None:
            data[_need(schema, *names, option=option)] = options[option]
    for key, value in (extra or {}).items():
        if key not in schema.inputs:
            raise _unknown(schema, key, f"extra_data[{key!r}]")
        data[key] = value
    _check_bounds(schema, data)
    return data


#: a Llama 3 chat template's system turn (its text in between)
_LLAMA3_SYSTEM = re.compile(
    r"(<\|start_header_id\|>system<\|end_header_id\|>\n\n)(.*?)(<\|eot_id\|>)", re.DOTALL
)


def _template_with(schema: ModelSchema, system: str) -> str | None:
    """The model's default ``prompt_template`` with ``system`` as its system turn, when
    the template has one (Llama 3's) and the text is safe in a template (no braces, which
    the model reads as placeholders); else None (the text goes into the prompt)."""
    default = schema.inputs.get("prompt_template", {}).get("default")
    if (
        not isinstance(default, str)
        or "{prompt}" not in default
        or "{" in system
        or ("}" in system)
    ):
        return None
    found = _LLAMA3_SYSTEM.search(default)
    if found is None:
        return None
    return default[: found.start(2)] + system + default[found.end(2) :]


def _limits(schema: ModelSchema, options: Mapping[str, Any], data: dict[str, Any]) -> None:
    if options.get("max_tokens") is not None:
        data[_need(schema, *_MAX_TOKENS, option="max_tokens")] = options["max_tokens"]
    stop = options.get("stop")
    if stop:
        stops = [stop] if isinstance(stop, str) else list(stop)
        name = _need(schema, *_STOP, option="stop")
        if name == "stop_sequences":
            if any("," in s for s in stops):  # the model splits the string at commas
                raise InvalidRequestError(
                    f"stop: {schema.model} takes stop sequences as one comma-separated "
                    "string, so a sequence cannot contain a comma",
                    param="stop",
                    provider=_PROVIDER,
                )
            data[name] = ",".join(stops)
        else:
            data[name] = stops if schema.inputs[name].get("type") == "array" else ",".join(stops)


def _tools(schema: ModelSchema, options: Mapping[str, Any], data: dict[str, Any]) -> None:
    tools = options.get("tools")
    choice = options.get("tool_choice")
    if choice not in (None, "auto", "none"):
        raise InvalidRequestError(
            f"tool_choice: {schema.model} chooses its tool calls itself (only 'auto' or "
            "'none'); llmplex can emulate other choices through the prompt on a text-only "
            "route",
            param="tool_choice",
            provider=_PROVIDER,
        )
    if not tools or choice == "none":
        return
    _need(schema, "tools", option="tools")
    functions = [t for t in tools if t.get("type") == "function"]
    if len(functions) != len(tools):
        raise InvalidRequestError(
            f"tools: {schema.model} takes function tools only", param="tools", provider=_PROVIDER
        )
    data["tools"] = [dict(t) for t in functions]


def _text(
    message: Mapping[str, Any], index: int, images: list[tuple[str, str]] | None = None
) -> str:
    """A message's text; its image URLs go to ``images`` (None: images are refused)."""
    where = f"messages[{index}]"
    if message.get("role") == "tool" or message.get("tool_calls"):
        raise InvalidRequestError(
            f"{where}: tool calls and tool results need a model that takes messages",
            param=where,
            provider=_PROVIDER,
        )
    content = message.get("content")
    if content is None or isinstance(content, str):
        return content or ""
    texts = []
    for j, part in enumerate(content):
        kind = part.get("type")
        if kind == "text":
            texts.append(part["text"])
        elif kind == "image_url" and images is not None:
            url = part["image_url"]
            images.append(
                (url["url"] if isinstance(url, Mapping) else url, f"{where}.content[{j}]")
            )
        else:
            raise InvalidRequestError(
                f"{where}.content[{j}]: a {kind} part cannot be given to this Replicate model here",
                param=f"{where}.content[{j}]",
                provider=_PROVIDER,
            )
    return "".join(texts)


def _message(message: Mapping[str, Any], index: int) -> dict[str, Any]:
    """One message for a model that takes ``messages``: OpenAI's shape, known keys only."""
    out = {
        k: message[k]
        for k in ("role", "content", "name", "tool_calls", "tool_call_id")
        if message.get(k) is not None
    }
    out.setdefault("content", "")
    return out


def _render(turns: Sequence[tuple[str, str]]) -> str:
    """One user question as it is; a conversation as ``Role: text`` lines and a cue."""
    if len(turns) == 1 and turns[0][0] == "user":
        return turns[0][1]
    lines = [f"{role.capitalize()}: {text}" for role, text in turns]
    return "\n".join(lines) + "\nAssistant:"


def _images(schema: ModelSchema, found: list[tuple[str, str]]) -> dict[str, Any]:
    name = schema.first(*_IMAGE)
    if name is None:
        where = found[0][1]
        raise InvalidRequestError(
            f"{where}: model {schema.model} takes text only (it has no image input; its "
            f"inputs are: {', '.join(sorted(schema.inputs))})",
            param=where,
            provider=_PROVIDER,
        )
    images = []
    for url, where in found:
        if not url.startswith(("http://", "https://", "data:")):
            raise InvalidRequestError(
                f"{where}: Replicate takes images as http(s) or data: URLs, got {url[:40]!r}",
                param=where,
                provider=_PROVIDER,
            )
        images.append(url)
    if schema.inputs[name].get("type") == "array":
        return {name: images}
    if len(images) > 1:
        raise InvalidRequestError(
            f"messages: {schema.model} takes one image ({name}), got {len(images)}",
            param="messages",
            provider=_PROVIDER,
        )
    return {name: images[0]}


def _need(schema: ModelSchema, *names: str, option: str | None = None) -> str:
    """The first of ``names`` the model takes, else the error naming its inputs."""
    found = schema.first(*names)
    if found is None:
        raise _unknown(schema, names[0], option or names[0])
    return found


def _unknown(schema: ModelSchema, name: str, param: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"{param}: model {schema.model} has no input for it; its inputs are: "
        f"{', '.join(sorted(schema.inputs))}",
        param=param.split("[")[0],
        provider=_PROVIDER,
    )


def _check_bounds(schema: ModelSchema, data: Mapping[str, Any]) -> None:
    """Refuse values the model's schema rules out (minimum, maximum, choices)."""
    for name, value in data.items():
        spec = schema.inputs.get(name, {})
        choices = spec.get("enum")
        if choices is not None and value not in choices:
            raise InvalidRequestError(
                f"{name}: model {schema.model} takes one of {', '.join(map(str, choices))}, "
                f"got {value!r}",
                param=name,
                provider=_PROVIDER,
            )
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        low, high = spec.get("minimum"), spec.get("maximum")
        if (
            (low is not None and value < low)
            or (high is not None and value > high)
            or (isinstance(value, float) and not math.isfinite(value))
        ):
            span = " to ".join(str(b) for b in (low, high) if b is not None)
            where = ">= " if high is None else ("<= " if low is None else "")
            raise InvalidRequestError(
                f"{name}: model {schema.model} takes {where}{span}, got {value!r}",
                param=name,
                provider=_PROVIDER,
            )
