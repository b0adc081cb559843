"""Request bodies of the HTTP API (pydantic models: validation and the OpenAPI schema).

The chat request follows OpenAI's ``POST /v1/chat/completions``: every field it defines
is declared (and then honoured or refused by the route, see :mod:`llmplex.request`).
Other top-level fields are vendor fields, forwarded to OpenAI-compatible upstreams; the
upstream overrides (:data:`UPSTREAM_FIELDS`) are refused unless the operator allows them.
Types are strict (``"1"`` is not a number), as OpenAI's API is.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr

__all__ = [
    "ChatCompletionRequest",
    "ChatMessage",
    "StreamOptions",
    "OPENAI_FIELD_NAMES",
    "ConversationRequest",
    "UPSTREAM_FIELDS",
    "ROLES",
]

#: body fields that choose where and how llmplex talks upstream; refused unless allowed
UPSTREAM_FIELDS: dict[str, Any] = {
    "base_url": str,
    "proxy": str,
    "api_key": str,
    "cookies": dict,
    "headers": dict,
}

ROLES = ("system", "developer", "user", "assistant", "tool")


class ChatMessage(BaseModel):
    """One message in OpenAI's shape: ``content`` a string or a list of parts (``text``,
    ``image_url``, ``input_audio``, ``file``; ``refusal`` for assistants), an assistant's
    ``tool_calls`` (``content`` null or absent then), a tool message's ``tool_call_id``.
    Parts and tool calls are checked in depth by :mod:`llmplex.prompt` (with the param)."""

    model_config = ConfigDict(strict=True, extra="forbid")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: StrictStr | list[dict[str, Any]] | None = None
    name: StrictStr | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: StrictStr | None = None
    refusal: StrictStr | None = None
    audio: dict[str, Any] | None = None
    function_call: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        """The message as the library takes it (unset keys left out)."""
        data = {"role": self.role, "content": self.content}
        for key in ("name", "tool_calls", "tool_call_id", "refusal", "audio", "function_call"):
            value = getattr(self, key)
            if value is not None:
                data[key] = value
        return data


class StreamOptions(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    include_usage: StrictBool = False
    include_obfuscation: StrictBool | None = None


Stop = StrictStr | Annotated[list[StrictStr], Field(max_length=4)]
Json = dict[str, Any]


class ChatCompletionRequest(BaseModel):
    """``POST /v1/chat/completions``: every field of OpenAI's API plus llmplex's
    ``provider``, ``conversation_id`` and ``emulate``. Fields OpenAI does not define are
    vendor fields (what an SDK's ``extra_body`` adds): forwarded to OpenAI-compatible
    upstreams, refused for the others."""

    model_config = ConfigDict(
        strict=True,
        extra="allow",  # vendor fields: see _create_arguments
        json_schema_extra={
            "examples": [
                {
                    "model": "gpt-4o-mini",
                    "messages": [{"role": "user", "content": "Say hello"}],
                    "stream": False,
                }
            ]
        },
    )

    model: StrictStr | None = Field(
        None, description="A model name or alias, or 'provider:model'. Empty: the default."
    )
    messages: list[ChatMessage] = Field(
        ..., min_length=1, description="The new messages (with conversation_id: the new turn)."
    )
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    max_tokens: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    stop: Stop | None = None
    n: Annotated[int, Field(ge=1, le=128)] | None = None
    seed: Annotated[int, Field(ge=-(2**63), le=2**63 - 1)] | None = None
    presence_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    frequency_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    logprobs: StrictBool | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    logit_bias: dict[str, float] | None = None
    tools: list[Json] | None = None
    tool_choice: StrictStr | Json | None = None
    parallel_tool_calls: StrictBool | None = None
    functions: list[Json] | None = None
    function_call: StrictStr | Json | None = None
    response_format: Json | None = None
    reasoning_effort: StrictStr | None = None
    service_tier: StrictStr | None = None
    user: StrictStr | None = None
    safety_identifier: StrictStr | None = None
    prompt_cache_key: StrictStr | None = None
    metadata: dict[str, StrictStr] | None = None
    store: StrictBool | None = None
    modalities: list[StrictStr] | None = None
    audio: Json | None = None
    prediction: Json | None = None
    verbosity: StrictStr | None = None
    web_search_options: Json | None = None
    provider: StrictStr | Annotated[list[StrictStr], Field(min_length=1)] | None = Field(
        None, description="llmplex: a provider name, or a list tried in order."
    )
    conversation_id: StrictStr | None = Field(
        None, description="llmplex: continue this stored conversation (see /v1/conversations)."
    )
    emulate: StrictBool | None = Field(
        None,
        description="llmplex: allow (true) or refuse (false) tool calls and JSON output "
        "emulated through the prompt on providers without them; unset: the server's setting.",
    )

    def openai_fields(self) -> dict[str, Any]:
        """The OpenAI fields that were set (not llmplex's, not vendor fields)."""
        data = {}
        given = self.model_fields_set  # (only those: not a getattr for each of ~30 names)
        for name in OPENAI_FIELD_NAMES:
            if name not in given:
                continue
            value = getattr(self, name)
            if value is not None:
                data[name] = (
                    value.model_dump(exclude_none=True) if isinstance(value, BaseModel) else value
                )
        return data


#: the OpenAI fields of the request model that go to the client as they are
OPENAI_FIELD_NAMES = tuple(
    name
    for name in ChatCompletionRequest.model_fields
    if name not in ("model", "messages", "stream", "provider", "conversation_id", "emulate")
)


class ConversationRequest(BaseModel):
    """``POST /v1/conversations``: start a conversation, optionally seeded."""

    model_config = ConfigDict(strict=True, extra="ignore")

    model: StrictStr | None = None
    messages: list[ChatMessage] = Field(default_factory=list)
    metadata: dict[str, StrictStr | int | float | bool | None] | None = None
