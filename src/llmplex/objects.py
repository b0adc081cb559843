"""OpenAI-shaped response objects: attribute access like the OpenAI SDK, ``model_dump()``.

Plain slotted classes rather than pydantic models: one is built per streamed chunk, and
``import llmplex`` must stay cheap. Field names and nesting follow the OpenAI Chat
Completions API, so code written against the ``openai`` package reads them unchanged.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

__all__ = [
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatCompletionMessage",
    "Choice",
    "ChunkChoice",
    "ChoiceDelta",
    "CompletionUsage",
    "Model",
    "ModelList",
]


def _dump(value: Any) -> Any:
    if isinstance(value, _Object):
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
        data = {name: _dump(getattr(self, name)) for name in self._fields}
        if exclude_none:
            data = {k: v for k, v in data.items() if v is not None}
        return data

    def model_dump_json(self, *, exclude_none: bool = False) -> str:
        return json.dumps(self.model_dump(exclude_none=exclude_none), ensure_ascii=False)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.model_dump() == self.model_dump()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__name__}({fields})"


class CompletionUsage(_Object):
    __slots__ = ("prompt_tokens", "completion_tokens", "total_tokens", "estimated")

    def __init__(self, prompt_tokens: int = 0, completion_tokens: int = 0,
                 total_tokens: int | None = None, estimated: bool = False) -> None:
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.total_tokens = prompt_tokens + completion_tokens if total_tokens is None else total_tokens
        #: True when llmplex estimated the counts (the provider reported none)
        self.estimated = estimated


class ChatCompletionMessage(_Object):
    __slots__ = ("role", "content")

    def __init__(self, role: str = "assistant", content: str | None = None) -> None:
        self.role = role
        self.content = content


class Choice(_Object):
    __slots__ = ("index", "message", "finish_reason", "logprobs")

    def __init__(self, index: int, message: ChatCompletionMessage, finish_reason: str | None,
                 logprobs: Any = None) -> None:
        self.index = index
        self.message = message
        self.finish_reason = finish_reason
        self.logprobs = logprobs


class _Completion(_Object):
    """What a whole answer and a streamed piece share: everything but their choices' type."""

    __slots__ = ("id", "object", "created", "model", "provider", "choices", "usage",
                 "conversation_id")
    _object: ClassVar[str] = ""

    def __init__(self, id: str, created: int, model: str, provider: str, choices: list[Any],
                 usage: CompletionUsage | None = None,
                 conversation_id: str | None = None) -> None:
        self.id = id
        self.object = self._object
        self.created = created
        self.model = model
        self.provider = provider
        self.choices = choices
        self.usage = usage
        self.conversation_id = conversation_id


class ChatCompletion(_Completion):
    """A whole answer (``stream=False``): ``choices`` are :class:`Choice` objects."""

    __slots__ = ()
    _object = "chat.completion"


class ChoiceDelta(_Object):
    __slots__ = ("role", "content")

    def __init__(self, content: str | None = None, role: str | None = None) -> None:
        self.role = role
        self.content = content


class ChunkChoice(_Object):
    __slots__ = ("index", "delta", "finish_reason", "logprobs")

    def __init__(self, delta: ChoiceDelta, finish_reason: str | None = None,
                 index: int = 0) -> None:
        self.index = index
        self.delta = delta
        self.finish_reason = finish_reason
        self.logprobs = None


class ChatCompletionChunk(_Completion):
    """One streamed piece (``stream=True``): ``choices`` are :class:`ChunkChoice` objects;
    the last has ``finish_reason`` and ``usage``."""

    __slots__ = ()
    _object = "chat.completion.chunk"


class Model(_Object):
    """A model and the providers that serve it."""

    __slots__ = ("id", "object", "created", "owned_by", "providers")

    def __init__(self, id: str, providers: list[str], created: int = 0) -> None:
        self.id = id
        self.object = "model"
        self.created = created
        self.owned_by = providers[0] if providers else "llmplex"
        self.providers = providers


class ModelList(_Object):
    __slots__ = ("object", "data")

    def __init__(self, data: list[Model]) -> None:
        self.object = "list"
        self.data = data

    def __iter__(self):
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)
