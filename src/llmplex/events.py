"""Typed stream events: everything a provider's stream carries besides answer text.

A provider's stream yields ``str`` text deltas (the fast path) and, mixed in, the events
defined here. Every event stringifies to ``""``, so ``"".join(map(str, chunks))`` is the
answer text (of the first choice; reasoning, refusals and tool calls excluded).

======================  ===================================================================
event                   what it carries
======================  ===================================================================
:class:`ReasoningDelta` a piece of the model's reasoning (``reasoning_content``)
:class:`ReasoningSignature` the service's signature of the reasoning so far (Anthropic's
                        thinking blocks: sent back with them in later turns)
:class:`RefusalDelta`   a piece of a refusal (the model declined; OpenAI's ``refusal``)
:class:`ToolCallDelta`  a fragment of a tool call: ``index``, ``id``/``name`` on the first
                        fragment, ``arguments`` a piece of the JSON string
:class:`ChoiceText`     a text delta of choice ``choice`` > 0 (requests with ``n`` > 1)
:class:`Logprobs`       token log-probabilities of the next text (or refusal) of a choice
:class:`Usage`          token counts, with OpenAI's ``*_tokens_details`` when reported
:class:`FinishReason`   why a choice ended: ``stop``, ``length``, ``tool_calls``,
                        ``content_filter``, ``canceled``
:class:`ResponseMeta`   the upstream's own model id, ``system_fingerprint``, ``service_tier``
======================  ===================================================================

Events with ``content = True`` (reasoning, refusal, tool calls, other choices' text) are
part of the answer: once one reached the caller, a failing provider is not replaced by
another (the answer would repeat). The others are bookkeeping.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "Event",
    "FinishReason",
    "Usage",
    "ReasoningDelta",
    "ReasoningSignature",
    "RefusalDelta",
    "ToolCallDelta",
    "ChoiceText",
    "Logprobs",
    "ResponseMeta",
]


class Event:
    """Base of the typed events: invisible when a stream is joined into text."""

    __slots__: tuple[str, ...] = ()
    #: part of the answer (a fallback after it would repeat it), or bookkeeping
    content = False

    def __str__(self) -> str:
        return ""

    def _state(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Event)
            and type(other) is type(self)
            and (other._state() == self._state())
        )

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._state()))

    def __repr__(self) -> str:
        fields = ", ".join(
            f"{name}={getattr(self, name)!r}"
            for name in self.__slots__
            if name != "choice" or getattr(self, name)
        )
        return f"{type(self).__name__}({fields})"


class FinishReason(Event):
    """Why choice ``choice`` ended: ``"stop"``, ``"length"``, ``"tool_calls"``, ..."""

    __slots__ = ("reason", "choice")

    def __init__(self, reason: str, choice: int = 0) -> None:
        self.reason = reason
        self.choice = choice


class Usage(Event):
    """Token counts reported by the service (or estimated, where it reports none).

    ``prompt_tokens_details`` / ``completion_tokens_details`` are OpenAI's detail objects
    as the service sent them (``cached_tokens``, ``reasoning_tokens``, ``audio_tokens``...);
    :attr:`cached_tokens` and :attr:`reasoning_tokens` read them.
    """

    __slots__ = (
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "prompt_tokens_details",
        "completion_tokens_details",
    )

    def __init__(
        self,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        total_tokens: int | None = None,
        *,
        prompt_tokens_details: dict[str, Any] | None = None,
        completion_tokens_details: dict[str, Any] | None = None,
    ) -> None:
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.total_tokens = (
            prompt_tokens + completion_tokens if total_tokens is None else total_tokens
        )
        self.prompt_tokens_details = prompt_tokens_details
        self.completion_tokens_details = completion_tokens_details

    @property
    def cached_tokens(self) -> int | None:
        """Prompt tokens served from the service's cache, when it says."""
        return (self.prompt_tokens_details or {}).get("cached_tokens")

    @property
    def reasoning_tokens(self) -> int | None:
        """Completion tokens spent on reasoning, when the service says."""
        return (self.completion_tokens_details or {}).get("reasoning_tokens")

    def get_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }
        if self.prompt_tokens_details is not None:
            data["prompt_tokens_details"] = dict(self.prompt_tokens_details)
        if self.completion_tokens_details is not None:
            data["completion_tokens_details"] = dict(self.completion_tokens_details)
        return data

    def __repr__(self) -> str:
        return "Usage({})".format(", ".join(f"{k}={v}" for k, v in self.get_dict().items()))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Usage) and other.get_dict() == self.get_dict()

    __hash__ = None  # type: ignore[assignment]


class ReasoningDelta(Event):
    """A piece of the model's reasoning (DeepSeek/vLLM ``reasoning_content``, OpenRouter's
    ``reasoning``): shown apart from the answer, never joined into it."""

    __slots__ = ("text", "choice")
    content = True

    def __init__(self, text: str, choice: int = 0) -> None:
        self.text = text
        self.choice = choice


class ReasoningSignature(Event):
    """The signature that closes a block of reasoning (Anthropic's ``signature_delta``):
    opaque, sent back with that reasoning in later turns so the service can check it."""

    __slots__ = ("signature", "choice")
    content = True

    def __init__(self, signature: str, choice: int = 0) -> None:
        self.signature = signature
        self.choice = choice


class RefusalDelta(Event):
    """A piece of a refusal: the model declined to answer (OpenAI's ``refusal``)."""

    __slots__ = ("text", "choice")
    content = True

    def __init__(self, text: str, choice: int = 0) -> None:
        self.text = text
        self.choice = choice


class ToolCallDelta(Event):
    """One fragment of a tool call, as OpenAI streams them.

    Fragments with the same ``index`` (within one choice) make one call: the first carries
    ``id`` and ``name``, each carries a piece of ``arguments`` (a JSON string once joined).
    A provider that has the whole call at once yields one fragment with all of it.
    """

    __slots__ = ("index", "id", "name", "arguments", "choice")
    content = True

    def __init__(
        self,
        index: int = 0,
        id: str | None = None,
        name: str | None = None,
        arguments: str = "",
        choice: int = 0,
    ) -> None:
        self.index = index
        self.id = id
        self.name = name
        self.arguments = arguments
        self.choice = choice


class ChoiceText(Event):
    """A text delta of choice ``choice`` (> 0) of a request with ``n`` > 1; the first
    choice's text is plain ``str``."""

    __slots__ = ("text", "choice")
    content = True

    def __init__(self, text: str, choice: int) -> None:
        self.text = text
        self.choice = choice


class Logprobs(Event):
    """Log-probabilities for the text (``content``) or refusal (``refusal``) that follows,
    in OpenAI's shape: lists of ``{"token", "logprob", "bytes", "top_logprobs"}``."""

    __slots__ = ("content_logprobs", "refusal_logprobs", "choice")

    def __init__(
        self,
        content: list[dict[str, Any]] | None = None,
        refusal: list[dict[str, Any]] | None = None,
        choice: int = 0,
    ) -> None:
        self.content_logprobs = content
        self.refusal_logprobs = refusal
        self.choice = choice

    def get_dict(self) -> dict[str, Any]:
        return {"content": self.content_logprobs, "refusal": self.refusal_logprobs}


class ResponseMeta(Event):
    """What the upstream says about its answer: its own ``model`` id (a dated snapshot,
    the model an alias resolved to), ``system_fingerprint`` and ``service_tier``."""

    __slots__ = ("model", "system_fingerprint", "service_tier")

    def __init__(
        self,
        model: str | None = None,
        system_fingerprint: str | None = None,
        service_tier: str | None = None,
    ) -> None:
        self.model = model
        self.system_fingerprint = system_fingerprint
        self.service_tier = service_tier
