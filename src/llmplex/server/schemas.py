"""Request bodies of the HTTP API (pydantic models: validation and the OpenAPI schema).

The chat request follows OpenAI's ``POST /v1/chat/completions``. Fields OpenAI defines
that llmplex does not use (``user``, ``logprobs``, ``tools``...) are accepted and ignored,
like any unknown field, except the upstream overrides (:data:`UPSTREAM_FIELDS`), which
are refused unless the operator allows them. Types are strict (``"1"`` is not a number),
as OpenAI's API is.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr

__all__ = ["ChatCompletionRequest", "ChatMessage", "TextPart", "StreamOptions",
           "ConversationRequest", "UPSTREAM_FIELDS", "ROLES"]

#: body fields that choose where and how llmplex talks upstream; refused unless allowed
UPSTREAM_FIELDS: dict[str, Any] = {
    "base_url": str,
    "proxy": str,
    "api_key": str,
    "cookies": dict,
    "headers": dict,
}

ROLES = ("system", "developer", "user", "assistant", "tool")


class TextPart(BaseModel):
    """A text content part (``{"type": "text", "text": "..."}``); parts are joined."""

    model_config = ConfigDict(strict=True, extra="ignore")

    type: Literal["text"]
    text: StrictStr


class ChatMessage(BaseModel):
    """One message. ``content`` is a string or a list of text parts."""

    model_config = ConfigDict(strict=True, extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: StrictStr | list[TextPart]
    name: StrictStr | None = None

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class StreamOptions(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")

    include_usage: StrictBool = False


Stop = Union[StrictStr, Annotated[list[StrictStr], Field(max_length=4)]]


class ChatCompletionRequest(BaseModel):
    """``POST /v1/chat/completions``: OpenAI's fields plus llmplex's ``provider`` and
    ``conversation_id``."""

    model_config = ConfigDict(
        strict=True,
        extra="allow",  # OpenAI fields llmplex does not use are ignored, not refused
        json_schema_extra={"examples": [{
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "Say hello"}],
            "stream": False,
        }]},
    )

    model: StrictStr | None = Field(
        None, description="A model name or alias, or 'provider:model'. Empty: the default.")
    messages: list[ChatMessage] = Field(
        ..., min_length=1, description="The new messages (with conversation_id: the new turn).")
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    max_tokens: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    stop: Stop | None = None
    n: Annotated[int, Field(ge=1, le=1, description="Only 1 is supported.")] | None = None
    seed: Annotated[int, Field(ge=-(2**63), le=2**63 - 1)] | None = None
    presence_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    frequency_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    provider: StrictStr | Annotated[list[StrictStr], Field(min_length=1)] | None = Field(
        None, description="llmplex: a provider name, or a list tried in order.")
    conversation_id: StrictStr | None = Field(
        None, description="llmplex: continue this stored conversation (see /v1/conversations).")


class ConversationRequest(BaseModel):
    """``POST /v1/conversations``: start a conversation, optionally seeded."""

    model_config = ConfigDict(strict=True, extra="ignore")

    model: StrictStr | None = None
    messages: list[ChatMessage] = Field(default_factory=list)
    metadata: dict[str, StrictStr | int | float | bool | None] | None = None
