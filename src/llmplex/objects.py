"""OpenAI-shaped response objects: attribute access like the OpenAI SDK, ``model_dump()``.

Plain slotted classes rather than pydantic models: one is built per streamed chunk, and
``import llmplex`` must stay cheap. Field names and nesting follow the OpenAI Chat
Completions API, so code written against the ``openai`` package reads them unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, ClassVar

__all__ = [
    "ChatCompletion",
    "ChatCompletionMessageToolCall",
    "Function",
    "ChoiceDeltaToolCall",
    "ChoiceDeltaToolCallFunction",
    "ChoiceLogprobs",
    "Details",
    "ChatCompletionChunk",
    "ChatCompletionMessage",
    "Choice",
    "ChunkChoice",
    "ChoiceDelta",
    "CompletionUsage",
    "Model",
    "ModelList",
]


#: the types a dump returns as they are (looked up by exact type: no isinstance chain for
#: the strings, numbers and Nones that make most of an object)
_PLAIN = frozenset({str, int, float, bool, type(None)})


def _dump(value: Any) -> Any:
    if type(value) in _PLAIN:
        return value
    if isinstance(value, (_Object, Details)):
        return value.model_dump()
    if isinstance(value, list):
        return [_dump(v) for v in value]
    if isinstance(value, dict):
        return {k: _dump(v) for k, v in value.items()}
    return value


class _Object:
    """Base: keyword construction, attribute access, ``model_dump()``, equality, repr."""

    __slots__: tuple[str, ...] = ()
    #: the fields, in order: the slots of the class and of its bases
    _fields: tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._fields = cls._fields + tuple(cls.__dict__.get("__slots__", ()))

    def model_dump(self, *, exclude_none: bool = False) -> dict[str, Any]:
        data = {}
        for name in self._fields:
            value = getattr(self, name)
            # (the plain check inline: a call less per field, and most fields are plain)
            data[name] = value if type(value) in _PLAIN else _dump(value)
        if exclude_none:
            data = {k: v for k, v in data.items() if v is not None}
        return data

    def model_dump_json(self, *, exclude_none: bool = False) -> str:
        return json.dumps(self.model_dump(exclude_none=exclude_none), ensure_ascii=False)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.model_dump() == self.model_dump()

    # unhashable, as __eq__ compares values; the ignore: typeshed declares
    # object.__hash__ a method, so mypy refuses the None Python documents
    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__name__}({fields})"


class Details:
    """A detail object as the service sent it (``usage.prompt_tokens_details``): its keys
    are attributes (``.cached_tokens``); a key the service did not send reads as None."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.__dict__.update(data)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return None

    def model_dump(self, **_: Any) -> dict[str, Any]:
        return dict(self.__dict__)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Details) and other.__dict__ == self.__dict__

    # unhashable, as __eq__ compares values; the ignore: typeshed declares
    # object.__hash__ a method, so mypy refuses the None Python documents
    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Details({self.__dict__!r})"


class CompletionUsage(_Object):
    __slots__ = (
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "prompt_tokens_details",
        "completion_tokens_details",
        "estimated",
    )

    def __init__(
        self,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        total_tokens: int | None = None,
        estimated: bool = False,
        *,
        prompt_tokens_details: dict[str, Any] | None = None,
        completion_tokens_details: dict[str, Any] | None = None,
    ) -> None:
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.total_tokens = (
            prompt_tokens + completion_tokens if total_tokens is None else total_tokens
        )
        #: the service's details (``cached_tokens``, ``reasoning_tokens``...), if it sent them
        self.prompt_tokens_details = (
            Details(prompt_tokens_details) if prompt_tokens_details is not None else None
        )
        self.completion_tokens_details = (
            Details(completion_tokens_details) if completion_tokens_details is not None else None
        )
        #: True when llmplex estimated the counts (the provider reported none)
        self.estimated = estimated


class Function(_Object):
    """The function a tool call calls: ``name`` and ``arguments`` (a JSON string)."""

    __slots__ = ("name", "arguments")

    def __init__(self, name: str, arguments: str) -> None:
        self.name = name
        self.arguments = arguments


class ChatCompletionMessageToolCall(_Object):
    """A whole tool call of an answer."""

    __slots__ = ("id", "type", "function")

    def __init__(self, id: str, function: Function, type: str = "function") -> None:
        self.id = id
        self.type = type
        self.function = function


class ChoiceLogprobs(_Object):
    """Token log-probabilities of a choice: lists of OpenAI's token objects (dicts)."""

    __slots__ = ("content", "refusal")

    def __init__(
        self,
        content: list[dict[str, Any]] | None = None,
        refusal: list[dict[str, Any]] | None = None,
    ) -> None:
        self.content = content
        self.refusal = refusal


class ChatCompletionMessage(_Object):
    """The answer's message: ``content`` (None for a tool-only answer or a refusal),
    ``refusal``, ``tool_calls`` and the model's ``reasoning_content`` where it gave any."""

    __slots__ = ("role", "content", "refusal", "tool_calls", "reasoning_content")

    def __init__(
        self,
        role: str = "assistant",
        content: str | None = None,
        refusal: str | None = None,
        tool_calls: list[ChatCompletionMessageToolCall] | None = None,
        reasoning_content: str | None = None,
    ) -> None:
        self.role = role
        self.content = content
        self.refusal = refusal
        self.tool_calls = tool_calls
        self.reasoning_content = reasoning_content


class Choice(_Object):
    __slots__ = ("index", "message", "finish_reason", "logprobs")

    def __init__(
        self,
        index: int,
        message: ChatCompletionMessage,
        finish_reason: str | None,
        logprobs: Any = None,
    ) -> None:
        self.index = index
        self.message = message
        self.finish_reason = finish_reason
        self.logprobs = logprobs


class _Completion(_Object):
    """What a whole answer and a streamed piece share: everything but their choices' type."""

    __slots__ = (
        "id",
        "object",
        "created",
        "model",
        "provider",
        "choices",
        "usage",
        "system_fingerprint",
        "service_tier",
        "conversation_id",
        "emulated",
    )
    _object: ClassVar[str] = ""

    def __init__(
        self,
        id: str,
        created: int,
        model: str,
        provider: str,
        choices: list[Any],
        usage: CompletionUsage | None = None,
        conversation_id: str | None = None,
        system_fingerprint: str | None = None,
        service_tier: str | None = None,
        emulated: list[str] | None = None,
    ) -> None:
        self.id = id
        self.object = self._object
        self.created = created
        self.model = model
        self.provider = provider
        self.choices = choices
        self.usage = usage
        self.system_fingerprint = system_fingerprint
        self.service_tier = service_tier
        self.conversation_id = conversation_id
        #: llmplex extra: what llmplex emulated through the prompt ("tools",
        #: "response_format") because the service lacks it; None when nothing was
        self.emulated = emulated


class ChatCompletion(_Completion):
    """A whole answer (``stream=False``): ``choices`` are :class:`Choice` objects."""

    __slots__ = ()
    _object = "chat.completion"


class ChoiceDeltaToolCallFunction(_Object):
    __slots__ = ("name", "arguments")

    def __init__(self, name: str | None = None, arguments: str | None = None) -> None:
        self.name = name
        self.arguments = arguments


class ChoiceDeltaToolCall(_Object):
    """A fragment of a tool call: ``id``, ``type`` and ``function.name`` on the first."""

    __slots__ = ("index", "id", "type", "function")

    def __init__(
        self,
        index: int,
        id: str | None = None,
        function: ChoiceDeltaToolCallFunction | None = None,
        type: str | None = None,
    ) -> None:
        self.index = index
        self.id = id
        self.type = type
        self.function = function


class ChoiceDelta(_Object):
    """What one chunk adds to a choice; ``reasoning_signature`` (llmplex extra): the
    signature closing the reasoning so far, from services that sign it (Anthropic)."""

    __slots__ = (
        "role",
        "content",
        "refusal",
        "tool_calls",
        "reasoning_content",
        "reasoning_signature",
    )

    def __init__(
        self,
        content: str | None = None,
        role: str | None = None,
        refusal: str | None = None,
        tool_calls: list[ChoiceDeltaToolCall] | None = None,
        reasoning_content: str | None = None,
        reasoning_signature: str | None = None,
    ) -> None:
        self.role = role
        self.content = content
        self.refusal = refusal
        self.tool_calls = tool_calls
        self.reasoning_content = reasoning_content
        self.reasoning_signature = reasoning_signature


class ChunkChoice(_Object):
    __slots__ = ("index", "delta", "finish_reason", "logprobs")

    def __init__(
        self,
        delta: ChoiceDelta,
        finish_reason: str | None = None,
        index: int = 0,
        logprobs: ChoiceLogprobs | None = None,
    ) -> None:
        self.index = index
        self.delta = delta
        self.finish_reason = finish_reason
        self.logprobs = logprobs


class ChatCompletionChunk(_Completion):
    """One streamed piece (``stream=True``): ``choices`` are :class:`ChunkChoice` objects;
    the last has ``finish_reason`` and ``usage``."""

    __slots__ = ()
    _object = "chat.completion.chunk"


class Model(_Object):
    """A model and the providers that serve it.

    ``created``: the Unix time the upstream gave when its model list was discovered, 0
    when unknown (static rows). ``available``: whether a request for it can be routed now
    (a working, configured provider serves it); when not, ``reason`` says why, per
    provider (only ``models.list(all=True)`` lists those)."""

    __slots__ = ("id", "object", "created", "owned_by", "providers", "available", "reason")

    def __init__(
        self,
        id: str,
        providers: list[str],
        created: int = 0,
        available: bool = True,
        reason: str | None = None,
    ) -> None:
        self.id = id
        self.object = "model"
        self.created = created
        self.owned_by = providers[0] if providers else "llmplex"
        self.providers = providers
        self.available = available
        self.reason = reason


class ModelList(_Object):
    __slots__ = ("object", "data")

    def __init__(self, data: list[Model]) -> None:
        self.object = "list"
        self.data = data

    def __iter__(self) -> Iterator[Model]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)
