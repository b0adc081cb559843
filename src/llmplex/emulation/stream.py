"""Running one emulated answer: the prompt, the provider's stream, the parse, the retries.

:func:`emulate` wraps a text-only provider's stream for a request with ``tools`` and/or a
JSON ``response_format`` the service lacks (:meth:`AsyncGeneratorProvider.emulated`):

1. the tools (and/or the JSON instructions) go into the system message, and earlier tool
   calls and results are rendered as text (:func:`llmplex.emulation.tools.render_messages`);
2. the answer's text is parsed as it streams (:class:`~llmplex.emulation.tools.ToolCallParser`):
   prose streams at once, what may be a call is held until it is clear;
3. valid calls come out at the end of the answer as :class:`~llmplex.events.ToolCallDelta`
   events with ``finish_reason: "tool_calls"``; JSON output comes out in one piece once
   validated;
4. an unusable answer (a required call missing, arguments or JSON not matching the schema,
   malformed JSON) is answered with one corrective message and asked again, up to
   ``retries`` times, as long as nothing of it reached the caller; then it is a
   :class:`~llmplex.errors.ToolCallError` / :class:`~llmplex.errors.OutputValidationError`
   carrying the raw answer.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, cast

from ..errors import OutputValidationError, ResponseError, ToolCallError
from ..events import FinishReason, ToolCallDelta, Usage
from ..limits import MAX_ANSWER_CHARS
from ..types import Chunk, JsonConversation
from . import json_output
from . import tools as tool_prompt

__all__ = ["Plan", "emulate", "plan"]

#: opens the provider's stream for these (rendered) messages, continuing this upstream
#: conversation state when one is given
Opener = Callable[[list[dict[str, str]], JsonConversation | None], AsyncIterator[Chunk]]


@dataclass(frozen=True)
class Plan:
    """What to emulate for one route of one request."""

    #: the function tools offered (normalised), or None (no tools, or tool_choice "none")
    tools: list[dict[str, Any]] | None
    #: a tool the answer must call (tool_choice naming a function)
    choice: str | None
    #: at least one call is required (tool_choice "required" or a named function)
    required: bool
    parallel: bool
    #: the response_format to emulate, or None
    response_format: Mapping[str, Any] | None
    retries: int
    #: what is emulated, for the answer's ``emulated`` field: "tools", "response_format"
    features: tuple[str, ...]

    def instruction(self) -> str | None:
        """The system-prompt text this plan adds (None: none, only history rendering)."""
        parts = []
        if self.tools:
            parts.append(tool_prompt.instruction(self.tools, self._tool_choice(), self.parallel))
        if self.response_format is not None:
            parts.append(json_output.instruction(self.response_format))
        return "\n\n".join(parts) or None

    def _tool_choice(self) -> Any:
        if self.choice is not None:
            return {"type": "function", "function": {"name": self.choice}}
        return "required" if self.required else "auto"


def plan(fields: Mapping[str, Any], emulated: frozenset[str], retries: int) -> Plan:
    """The plan for a request's ``fields`` when ``emulated`` needs are emulated."""
    offered = None
    choice = None
    required = False
    features = []
    if "tools" in emulated:
        features.append("tools")
        tool_choice = fields.get("tool_choice", "auto")
        if fields.get("tools") and tool_choice != "none":
            offered = tool_prompt.function_tools(fields["tools"])
            if isinstance(tool_choice, Mapping):
                choice = (tool_choice.get("function") or {}).get("name")
                required = True
            elif tool_choice == "required":
                required = True
    response_format = None
    if emulated & {"json_object", "json_schema"}:
        features.append("response_format")
        response_format = fields["response_format"]
    return Plan(
        offered,
        choice,
        required,
        fields.get("parallel_tool_calls") is not False,
        response_format,
        retries,
        tuple(features),
    )


async def emulate(
    plan: Plan, messages: Sequence[Mapping[str, Any]], open_stream: Opener, provider: str
) -> AsyncIterator[Chunk]:
    """The provider's answer with ``plan`` emulated (see the module docstring)."""
    rendered = tool_prompt.render_messages(messages, plan.instruction())
    usage: Usage | None = None
    state: JsonConversation | None = None
    attempt = 0
    while True:
        parser = (
            tool_prompt.ToolCallParser(
                plan.tools, choice=plan.choice, parallel=plan.parallel, hold_all=plan.required
            )
            if plan.tools
            else None
        )
        held_json = plan.response_format is not None  # JSON comes out once validated
        text: list[str] = []  # the answer's text, when held for the JSON check
        calls: list[tool_prompt.ToolCall] = []
        delivered = False  # some text reached the caller: no retry can undo it
        spacing: list[str] = []  # whitespace after a call, held
        reason = "stop"
        size = 0  # characters of this attempt's answer
        # (providers' streams are async generators: they have aclose)
        async with aclosing(
            cast(AsyncGenerator[Chunk, None], open_stream(rendered, state))
        ) as upstream:
            async for chunk in upstream:
                if type(chunk) is str:
                    size += len(chunk)
                    if size > MAX_ANSWER_CHARS:  # what is held here is bounded too
                        raise ResponseError(
                            f"answer too long: over {MAX_ANSWER_CHARS} characters",
                            provider=provider,
                        )
                    items: Sequence[Any] = parser.feed(chunk) if parser is not None else (chunk,)
                elif isinstance(chunk, FinishReason):
                    reason = chunk.reason  # ours comes at the end
                    continue
                elif isinstance(chunk, Usage):
                    usage = chunk if usage is None else _add(usage, chunk)
                    continue
                elif isinstance(chunk, JsonConversation):
                    state = chunk  # the latest attempt's state is the conversation's
                    continue
                else:
                    yield chunk  # reasoning, the upstream's model id...
                    continue
                for item in items:
                    if isinstance(item, tool_prompt.ToolCall):
                        calls.append(item)
                    elif held_json:
                        text.append(item)
                    elif calls and not item.strip():
                        spacing.append(item)  # between calls: dropped unless text follows
                    elif item:
                        if spacing:
                            item = "".join(spacing) + item
                            spacing.clear()
                        delivered = True
                        yield item
        # What the parser held to the end comes out only once the answer is judged, so
        # a retry can still replace it.
        tail: list[str] = []
        if parser is not None:
            for item in parser.finish():
                if isinstance(item, tool_prompt.ToolCall):
                    calls.append(item)
                elif held_json:
                    text.append(item)
                elif item and (item.strip() or not calls):
                    tail.extend(spacing)
                    spacing.clear()
                    tail.append(item)
        problems: list[str] = []
        error: type[ToolCallError | OutputValidationError] = ToolCallError
        raw = parser.raw if parser is not None else "".join(text)
        if parser is not None:
            problems.extend(parser.errors)
            if plan.required and not calls and not parser.errors:
                problems.append(
                    f"no tool call, but tool_choice requires "
                    f"{'a call of ' + repr(plan.choice) if plan.choice else 'one'}"
                )
        output = None
        response_format = plan.response_format or {}
        if held_json and not calls and not problems:
            output, json_problems = json_output.check(response_format, "".join(text))
            if json_problems:
                problems.extend(json_problems)
                error = OutputValidationError
        if problems:
            if reason == "length":
                problems.append("the answer was cut off (finish_reason: length)")
            if attempt < plan.retries and not delivered:
                attempt += 1
                correction = (
                    json_output.correction(problems, response_format)
                    if error is OutputValidationError
                    else tool_prompt.correction(
                        problems, required=plan.required, choice=plan.choice
                    )
                )
                rendered = [
                    *rendered,
                    {"role": "assistant", "content": raw},
                    {"role": "user", "content": correction},
                ]
                continue
            what = "JSON output" if error is OutputValidationError else "tool calls"
            tried = (
                f" after {attempt} corrective retr{'y' if attempt == 1 else 'ies'}"
                if attempt
                else ""
            )
            raise error(
                f"emulated {what}: the model's answer was unusable{tried}: "
                + "; ".join(problems[:5]),
                raw=raw,
                problems=problems,
                provider=provider,
            )
        if tail:
            yield "".join(tail)
        if output is not None:
            yield output
        elif held_json and calls:
            # The model called a tool instead of answering in JSON: its prose goes along.
            prose = "".join(text)
            if prose.strip():
                yield prose
        for index, call in enumerate(calls):
            yield ToolCallDelta(index, call.id, call.name, call.arguments)
        if state is not None:
            yield state
        if usage is not None:
            yield usage
        yield FinishReason("tool_calls" if calls else reason)
        return


def _add(a: Usage, b: Usage) -> Usage:
    """Two attempts' usage together: a retried answer costs both."""
    return Usage(
        a.prompt_tokens + b.prompt_tokens,
        a.completion_tokens + b.completion_tokens,
        a.total_tokens + b.total_tokens,
    )
