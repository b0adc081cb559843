"""The Responses API's request translated onto ``chat.completions.create`` arguments.

``input`` items become Chat Completions messages: ``message`` items (``input_text``,
``input_image``, ``input_file`` and, for assistants, ``output_text`` and ``refusal``
content), ``function_call`` items (an assistant message's ``tool_calls``; consecutive ones,
and an assistant message right before them, make one message, as one Chat Completions
answer holds them) and ``function_call_output`` items (``tool`` messages). Function
``tools``, ``tool_choice``, ``text.format``, ``reasoning.effort`` and
``max_output_tokens`` map onto their Chat Completions fields. Anything with no Chat
Completions counterpart is refused with a 400 naming it (``param`` set): other tool and
item types, file ids, ``include`` entries, ``background``, ``conversation``...

One exception, said here because it is not an error: a ``reasoning`` item in ``input``
(an earlier answer's reasoning, which the ``openai-agents`` SDK sends back) is left out:
Chat Completions has no field that gives a model its earlier reasoning.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from .errors import APIError

__all__ = ["ChatArguments", "chat_arguments", "input_items", "input_messages"]

ChatArguments = dict[str, Any]


def _bad(message: str, param: str, code: str = "invalid_value") -> APIError:
    return APIError(400, message, code=code, param=param)


def _unsupported(what: str, param: str) -> APIError:
    return APIError(
        400,
        f"{what} is not supported by llmplex's Responses API (it serves "
        "what Chat Completions can carry).",
        code="unsupported_parameter",
        param=param,
    )


def _string(value: Any, param: str) -> str:
    if not isinstance(value, str):
        raise _bad(f"Invalid type for '{param}': expected a string.", param, "invalid_type")
    return value


def _part(part: Any, role: str, param: str) -> dict[str, Any]:
    """One content part of a ``message`` item as a Chat Completions part."""
    if not isinstance(part, Mapping):
        raise _bad(f"Invalid type for '{param}': expected an object.", param, "invalid_type")
    kind = part.get("type")
    if kind in ("input_text", "output_text", "text"):
        expected = "output_text" if role == "assistant" else "input_text"
        if kind not in (expected, "text"):
            raise _bad(
                f"Invalid value: '{kind}'. The text of a {role} message is '{expected}'.",
                f"{param}.type",
            )
        return {"type": "text", "text": _string(part.get("text"), f"{param}.text")}
    if kind == "refusal" and role == "assistant":
        return {"type": "refusal", "refusal": _string(part.get("refusal"), f"{param}.refusal")}
    if kind == "input_image" and role == "user":
        if part.get("file_id") is not None:
            raise _unsupported("An image given by 'file_id'", f"{param}.file_id")
        url = _string(part.get("image_url"), f"{param}.image_url")
        image: dict[str, Any] = {"url": url}
        detail = part.get("detail")
        if detail is not None and detail != "auto":
            image["detail"] = _string(detail, f"{param}.detail")
        return {"type": "image_url", "image_url": image}
    if kind == "input_file" and role == "user":
        for name in ("file_id", "file_url"):
            if part.get(name) is not None:
                raise _unsupported(f"A file given by '{name}'", f"{param}.{name}")
        file: dict[str, Any] = {"file_data": _string(part.get("file_data"), f"{param}.file_data")}
        if part.get("filename") is not None:
            file["filename"] = _string(part.get("filename"), f"{param}.filename")
        return {"type": "file", "file": file}
    raise _bad(
        f"Invalid value: {kind!r}. Content of a {role} message is 'input_text', "
        + (
            "'output_text' or 'refusal'."
            if role == "assistant"
            else "'input_image' or 'input_file'."
            if role == "user"
            else "only."
        ),
        f"{param}.type",
    )


def _message(item: Mapping[str, Any], param: str) -> dict[str, Any]:
    role = item.get("role")
    if role not in ("user", "assistant", "system", "developer"):
        raise _bad(
            f"Invalid value: {role!r}. Supported values are: 'user', 'assistant', "
            "'system', and 'developer'.",
            f"{param}.role",
        )
    content = item.get("content")
    if isinstance(content, str):
        return {"role": role, "content": content}
    if not isinstance(content, list):
        raise _bad(
            f"Invalid type for '{param}.content': expected a string or an array of content parts.",
            f"{param}.content",
            "invalid_type",
        )
    parts = [_part(p, role, f"{param}.content[{j}]") for j, p in enumerate(content)]
    if role == "assistant":
        refusal = "".join(p["refusal"] for p in parts if p["type"] == "refusal")
        message: dict[str, Any] = {
            "role": role,
            "content": "".join(p["text"] for p in parts if p["type"] == "text"),
        }
        if refusal:
            message["refusal"] = refusal
        return message
    if role != "user":  # system and developer messages take text only
        return {"role": role, "content": "".join(p["text"] for p in parts)}
    return {"role": role, "content": parts}


def _output_text(output: Any, param: str) -> str:
    """A ``function_call_output``'s ``output``: a string, or text parts."""
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        texts = []
        for j, part in enumerate(output):
            if not (isinstance(part, Mapping) and part.get("type") in ("input_text", "text")):
                kind = part.get("type") if isinstance(part, Mapping) else None
                raise _unsupported(
                    f"A function_call_output part of type {kind!r}", f"{param}[{j}].type"
                )
            texts.append(_string(part.get("text"), f"{param}[{j}].text"))
        return "".join(texts)
    raise _bad(
        f"Invalid type for '{param}': expected a string or an array of parts.",
        param,
        "invalid_type",
    )


def input_messages(value: Any) -> list[dict[str, Any]]:
    """``input`` (a string or a list of items) as Chat Completions messages."""
    if value is None:
        return []
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if not isinstance(value, list):
        raise _bad(
            "Invalid type for 'input': expected a string or an array of input items.",
            "input",
            "invalid_type",
        )
    messages: list[dict[str, Any]] = []
    for i, item in enumerate(value):
        param = f"input[{i}]"
        if not isinstance(item, Mapping):
            raise _bad(f"Invalid type for '{param}': expected an object.", param, "invalid_type")
        kind = item.get("type", "message" if "role" in item else None)
        if kind == "message":
            messages.append(_message(item, param))
        elif kind == "function_call":
            call = {
                "id": _string(item.get("call_id"), f"{param}.call_id"),
                "type": "function",
                "function": {
                    "name": _string(item.get("name"), f"{param}.name"),
                    "arguments": _string(item.get("arguments"), f"{param}.arguments"),
                },
            }
            last = messages[-1] if messages else None
            # One Chat Completions answer holds its text and all of its calls.
            if last is not None and last["role"] == "assistant" and "refusal" not in last:
                last.setdefault("tool_calls", []).append(call)
                if not last.get("content"):
                    last["content"] = None
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": _string(item.get("call_id"), f"{param}.call_id"),
                    "content": _output_text(item.get("output"), f"{param}.output"),
                }
            )
        elif kind == "reasoning":
            continue  # see the module docstring
        elif kind == "item_reference":
            raise _unsupported(
                "An 'item_reference' input item (use previous_response_id)", f"{param}.type"
            )
        else:
            raise _unsupported(f"An input item of type {kind!r}", f"{param}.type")
    return messages


def _tools(tools: Any) -> list[dict[str, Any]]:
    out = []
    for i, tool in enumerate(tools):
        param = f"tools[{i}]"
        if not isinstance(tool, Mapping):
            raise _bad(f"Invalid type for '{param}': expected an object.", param, "invalid_type")
        kind = tool.get("type")
        if kind != "function":
            raise _unsupported(
                f"A tool of type {kind!r} (llmplex serves function tools)", f"{param}.type"
            )
        function: dict[str, Any] = {"name": _string(tool.get("name"), f"{param}.name")}
        for key in ("description", "parameters", "strict"):
            if tool.get(key) is not None:
                function[key] = tool[key]
        unknown = sorted(set(tool) - {"type", "name", "description", "parameters", "strict"})
        if unknown:
            raise _bad(
                f"Unknown parameter: '{param}.{unknown[0]}'.",
                f"{param}.{unknown[0]}",
                "unknown_parameter",
            )
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(choice: Any) -> Any:
    if choice in ("none", "auto", "required"):
        return choice
    if isinstance(choice, Mapping) and choice.get("type") == "function":
        return {
            "type": "function",
            "function": {"name": _string(choice.get("name"), "tool_choice.name")},
        }
    kind = choice.get("type") if isinstance(choice, Mapping) else choice
    raise _unsupported(f"tool_choice {kind!r}", "tool_choice")


def _response_format(text: Mapping[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """``text`` as ``(response_format, verbosity)``."""
    unknown = sorted(set(text) - {"format", "verbosity"})
    if unknown:
        raise _bad(
            f"Unknown parameter: 'text.{unknown[0]}'.", f"text.{unknown[0]}", "unknown_parameter"
        )
    verbosity = text.get("verbosity")
    fmt = text.get("format")
    if fmt is None:
        return None, verbosity
    if not isinstance(fmt, Mapping):
        raise _bad(
            "Invalid type for 'text.format': expected an object.", "text.format", "invalid_type"
        )
    kind = fmt.get("type")
    if kind == "text":
        return None, verbosity
    if kind == "json_object":
        return {"type": "json_object"}, verbosity
    if kind == "json_schema":
        if not isinstance(fmt.get("schema"), Mapping):
            raise _bad(
                "Missing required parameter: 'text.format.schema'.",
                "text.format.schema",
                "missing_required_parameter",
            )
        schema: dict[str, Any] = {
            "name": _string(fmt.get("name"), "text.format.name"),
            "schema": fmt["schema"],
        }
        for key in ("description", "strict"):
            if fmt.get(key) is not None:
                schema[key] = fmt[key]
        return {"type": "json_schema", "json_schema": schema}, verbosity
    raise _bad(
        f"Invalid value: {kind!r}. Supported values are: 'text', 'json_object', and 'json_schema'.",
        "text.format.type",
    )


def chat_arguments(
    body: Any, history: list[dict[str, Any]]
) -> tuple[ChatArguments, list[dict[str, Any]]]:
    """``(chat.completions.create kwargs, the input as messages)`` for a validated
    :class:`~llmplex.server.responses_api.ResponseRequest`; ``history`` is the stored
    conversation ``previous_response_id`` continues (its messages come first)."""
    new = input_messages(body.input)
    if not new and not history:
        raise _bad("Missing required parameter: 'input'.", "input", "missing_required_parameter")
    messages = [*history, *new]
    if body.instructions:
        # Instructions apply to this response only: never stored, never carried over. A
        # system message, which every provider takes ("developer" is not known to all).
        messages = [{"role": "system", "content": body.instructions}, *messages]
    arguments: ChatArguments = {"model": body.model or None, "messages": messages}
    for name in (
        "temperature",
        "top_p",
        "parallel_tool_calls",
        "user",
        "safety_identifier",
        "prompt_cache_key",
        "service_tier",
    ):
        value = getattr(body, name)
        if value is not None:
            arguments[name] = value
    if body.max_output_tokens is not None:
        arguments["max_completion_tokens"] = body.max_output_tokens
    if body.tools:
        arguments["tools"] = _tools(body.tools)
    if body.tool_choice is not None:
        arguments["tool_choice"] = _tool_choice(body.tool_choice)
    if body.text is not None:
        response_format, verbosity = _response_format(body.text)
        if response_format is not None:
            arguments["response_format"] = response_format
        if verbosity is not None:
            arguments["verbosity"] = verbosity
    if body.reasoning is not None:
        effort = body.reasoning.get("effort")
        if effort is not None:
            arguments["reasoning_effort"] = effort
        summary = body.reasoning.get("summary", body.reasoning.get("generate_summary"))
        if summary not in (None, "auto"):
            raise _unsupported(
                f"reasoning.summary {summary!r} (the model's reasoning is "
                "returned as it is, never summarised)",
                "reasoning.summary",
            )
        unknown = sorted(set(body.reasoning) - {"effort", "summary", "generate_summary"})
        if unknown:
            raise _bad(
                f"Unknown parameter: 'reasoning.{unknown[0]}'.",
                f"reasoning.{unknown[0]}",
                "unknown_parameter",
            )
    if body.provider is not None:
        arguments["provider"] = body.provider
    if body.emulate is not None:
        arguments["emulate"] = body.emulate
    return arguments, new


#: the id prefix of each item type (as OpenAI's ids start)
_ID_PREFIXES = {
    "message": "msg_",
    "function_call": "fc_",
    "function_call_output": "fco_",
    "reasoning": "rs_",
}


def input_items(value: Any) -> list[dict[str, Any]]:
    """``input`` (already checked by :func:`input_messages`) as the items
    ``GET /v1/responses/{id}/input_items`` lists: each with its ``type`` and an ``id``,
    messages with their content as parts."""
    if value is None:
        return []
    if isinstance(value, str):
        value = [{"role": "user", "content": value}]
    items = []
    for given in value:
        item = dict(given)
        kind = item.setdefault("type", "message")
        if kind == "message":
            content = item.get("content")
            if isinstance(content, str):
                part = "output_text" if item.get("role") == "assistant" else "input_text"
                item["content"] = [{"type": part, "text": content}]
            item.setdefault("status", "completed")
        if not item.get("id"):
            item["id"] = _ID_PREFIXES.get(kind, "item_") + os.urandom(24).hex()
        items.append(item)
    return items
