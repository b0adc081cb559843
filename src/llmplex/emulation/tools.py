"""Tool calling by prompt: the instruction, the history as text, and the answer's parser.

The instruction asks for one exact format, ``<tool_call>{"name": ..., "arguments": {...}}
</tool_call>``, but :class:`ToolCallParser` accepts what models actually write: those tags
(also unclosed at the end), fenced ```json / ``` / ```tool_call blocks, bare JSON call
objects anywhere in the text, arrays of them, ``{"tool_calls": [...]}``, and the common call
shapes (``name``/``arguments``, ``parameters``, ``function``, ``tool``/``args``...).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidRequestError
from ..prompt import text_content
from .schema import validate

__all__ = [
    "ToolCall",
    "ToolCallParser",
    "choice_name",
    "correction",
    "function_tools",
    "instruction",
    "new_call_id",
    "render_messages",
]

OPEN, CLOSE, FENCE = "<tool_call>", "</tool_call>", "```"
_FORMAT = '<tool_call>{"name": "<tool name>", "arguments": {<the arguments>}}</tool_call>'
#: the keys a call object may begin with (the candidate is held while its first key may be one)
_FIRST_KEYS = (
    "name",
    "tool",
    "tool_name",
    "function",
    "function_call",
    "type",
    "id",
    "arguments",
    "parameters",
    "tool_calls",
)
_NAME_KEYS = ("name", "tool", "tool_name")
_ARG_KEYS = ("arguments", "parameters", "args", "input", "tool_input")
#: keys of a call object that are not its arguments (for calls written without an arguments key)
_META_KEYS = frozenset({*_NAME_KEYS, "type", "id", "function", "function_call"})
_JSON_FENCES = frozenset({"", "json", "json5", "jsonc", "tool_call", "tool_calls"})
_MENTION = re.compile(r'"(?:name|tool|tool_name|function)"\s*:\s*"([^"\\]{1,64})"')
_STRUCT = re.compile(r'[{}\[\]"]')
_STRING_STOP = re.compile(r'[\\"]')


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _loads(text: str) -> Any:
    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


def new_call_id() -> str:
    """A fresh tool-call id in OpenAI's form: ``call_`` and 24 hex digits."""
    return "call_" + os.urandom(12).hex()


@dataclass(frozen=True)
class ToolCall:
    """One parsed, schema-valid call; ``arguments`` is a compact JSON object string."""

    id: str
    name: str
    arguments: str


def function_tools(
    tools: Sequence[Mapping[str, Any]] | None = None,
    functions: Sequence[Mapping[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """``tools`` (OpenAI's ``{"type": "function", "function": {...}}``) and legacy
    ``functions`` as ``{"name", "description", "parameters"}`` dicts. A custom tool cannot
    be emulated: :class:`InvalidRequestError` naming it."""
    out = []
    for i, tool in enumerate(tools or ()):
        if tool.get("type", "function") != "function" or not isinstance(
            tool.get("function"), Mapping
        ):
            raise InvalidRequestError(
                f"tools[{i}]: only function tools can be emulated on a text-only provider, "
                f"not {tool.get('type')!r}",
                param=f"tools[{i}].type",
            )
        out.append(_function(tool["function"]))
    out.extend(_function(f) for f in functions or ())
    return out


def _function(spec: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "name": spec["name"],
        "description": spec.get("description") or "",
        "parameters": spec.get("parameters") or {},
    }


def choice_name(tool_choice: Any) -> str | None:
    """The tool a ``tool_choice`` (or legacy ``function_call``) forces, or None."""
    if isinstance(tool_choice, Mapping):
        function = tool_choice.get("function")
        name = function.get("name") if isinstance(function, Mapping) else tool_choice.get("name")
        return name if isinstance(name, str) else None
    return None


def instruction(
    tools: Sequence[Mapping[str, Any]],
    tool_choice: Any = "auto",
    parallel_tool_calls: bool | None = None,
) -> str:
    """The system-prompt text offering ``tools`` (OpenAI tools or :func:`function_tools`
    dicts) in the one output format the parser expects first.

    ``tool_choice`` is ``"auto"``, ``"required"`` or a named function; ``"none"`` offers no
    tools, so it is a :class:`InvalidRequestError` here (render the history without an
    instruction instead)."""
    specs = [
        function_tools([t])[0] if "type" in t or "function" in t else _function(t) for t in tools
    ]
    forced = choice_name(tool_choice)
    if tool_choice not in ("auto", "required", None) and forced is None:
        raise InvalidRequestError(
            f"tool_choice {tool_choice!r} cannot be emulated", param="tool_choice"
        )
    if forced is not None and forced not in {s["name"] for s in specs}:
        raise InvalidRequestError(
            f"tool_choice names {forced!r}, which is not among the tools", param="tool_choice"
        )
    lines = [
        (
            "You can call the following tools (functions). Each is given with the JSON "
            "Schema of its arguments."
        ),
        "",
    ]
    for spec in specs:
        lines.append(f"- {spec['name']}: {spec['description'] or '(no description)'}")
        lines.append(f"  arguments schema: {_dumps(spec['parameters'])}")
    lines += [
        "",
        "To call a tool, write exactly:",
        _FORMAT,
        (
            "Write each call in its own <tool_call> tag, as JSON, with arguments that "
            "match the tool's schema. Write nothing after your tool calls: the results "
            "come back to you in the next message, inside <tool_result> tags."
        ),
    ]
    if forced is not None:
        lines.append(
            f"You must call the tool {forced!r}, exactly once and no other tool: "
            "answer with that call only."
        )
    elif tool_choice == "required":
        lines.append("You must call at least one tool: answer with tool calls only.")
    else:
        lines.append(
            "If no tool is needed, answer normally in plain text, without any <tool_call>."
        )
    if parallel_tool_calls is False and forced is None:
        lines.append("Make at most one tool call per answer.")
    return "\n".join(lines)


def _escape(value: str) -> str:
    return value.replace("&", "&amp;").replace('"', "&quot;")


def render_messages(
    messages: Sequence[Mapping[str, Any]], instruction: str | None
) -> list[dict[str, str]]:
    """``messages`` as a text-only service takes them: ``instruction`` joins the leading
    system message (``developer`` becomes ``system``), tool calls become ``<tool_call>``
    text and tool results user messages in ``<tool_result>`` tags. Other content is
    reduced by :func:`llmplex.prompt.text_content` (non-text parts are refused)."""
    out: list[dict[str, str]] = []
    names: dict[str, str] = {}  # call id -> tool name, for the results that answer them
    for i, message in enumerate(messages):
        role = message.get("role")
        item: dict[str, str]
        if role == "assistant":
            calls = [c.get("function") or {} for c in message.get("tool_calls") or ()]
            for call, spec in zip(message.get("tool_calls") or (), calls, strict=True):
                if isinstance(call.get("id"), str):
                    names[call["id"]] = spec.get("name", "")
            if isinstance(message.get("function_call"), Mapping):
                calls.append(message["function_call"])
            text = text_content({"role": role, "content": message.get("content")}, i)
            pieces = [text] if text else []
            pieces += [OPEN + _dumps_call(spec) + CLOSE for spec in calls]
            item = {"role": "assistant", "content": "\n".join(pieces)}
        elif role in ("tool", "function"):
            call_id = message.get("tool_call_id")
            name = names.get(call_id or "") or message.get("name") or ""
            attrs = f' name="{_escape(name)}"' if name else ""
            if isinstance(call_id, str):
                attrs += f' tool_call_id="{_escape(call_id)}"'
            text = text_content({"role": "user", "content": message.get("content")}, i)
            item = {"role": "user", "content": f"<tool_result{attrs}>{text}</tool_result>"}
        else:
            item = {
                "role": "system" if role == "developer" else str(role),
                "content": text_content(message, i),
            }
            if isinstance(message.get("name"), str):
                item["name"] = message["name"]
        out.append(item)
    if instruction:
        if out and out[0]["role"] == "system":
            head = out[0]["content"]
            out[0] = {**out[0], "content": f"{head}\n\n{instruction}" if head else instruction}
        else:
            out.insert(0, {"role": "system", "content": instruction})
    return out


def _dumps_call(spec: Mapping[str, Any]) -> str:
    arguments = spec.get("arguments")
    if isinstance(arguments, str):
        try:
            arguments = _loads(arguments)
        except ValueError:
            pass  # shown as the string it is: the model sees what it wrote
    return json.dumps({"name": spec.get("name"), "arguments": arguments}, ensure_ascii=False)


def correction(errors: Sequence[str], *, required: bool = False, choice: str | None = None) -> str:
    """The user message asking, once, for a corrected answer."""
    problems = list(errors) or ["the answer contains no tool call"]
    lines = [
        "Your previous answer could not be used:",
        *(f"- {e}" for e in problems),
        "",
        "Answer again. To call a tool, write exactly:",
        _FORMAT,
        "with arguments that match the tool's schema, and nothing after the calls.",
    ]
    if choice is not None:
        lines.append(f"You must call the tool {choice!r}.")
    elif required:
        lines.append("You must call at least one tool.")
    else:
        lines.append("If no tool is needed, answer in plain text without any <tool_call>.")
    return "\n".join(lines)


# The parser's modes: what the held text (if any) may be.
_TEXT, _TAG_OPEN, _TAG_BODY, _TICKS, _FENCE_INFO, _FENCE_BODY, _FENCE_PASS, _JSON = range(8)


class _Shape:
    """Decides, one character at a time, whether a JSON value may still start a call:
    ``[`` then ``{``, then a first key that is (a prefix of) one of the call keys."""

    __slots__ = ("key", "state")

    def __init__(self) -> None:
        self.state = "start"
        self.key = ""

    def step(self, char: str) -> bool | None:
        """True: a call key began; False: it cannot be a call; None: still open."""
        state = self.state
        if state == "key":
            if char == '"':
                return self.key in _FIRST_KEYS
            self.key += char
            return None if any(k.startswith(self.key) for k in _FIRST_KEYS) else False
        if char in " \t\r\n":
            return None
        if state == "start":
            self.state = "array" if char == "[" else "object"
            return None if char in "{[" else False
        if state == "array":
            self.state = "object"
            return None if char == "{" else False
        self.state = "key"  # state "object": the first key's opening quote
        return None if char == '"' else False


class ToolCallParser:
    """Turns a streamed answer into text to deliver now and :class:`ToolCall` items.

    ``tools`` are :func:`function_tools` dicts. ``choice`` is a tool every call must name,
    ``parallel=False`` allows one call, ``hold_all`` delivers nothing before :meth:`finish`.
    Text that plainly is no call is delivered at once; text that may be one (``<``, a code
    fence, ``{`` or ``[``) is held only until that is clear. Invalid calls (unknown tool,
    arguments that are no JSON object or break the schema) go to :attr:`errors`; their text
    is not delivered. Rules for unclear cases:

    - a call object without an arguments key takes its other keys as the arguments
      (``{"name": "t"}`` has ``{}``); the schema then decides. Without an arguments key, an
      object is a call only if it names a known tool, so ``{"name": "Bob", "age": 3}``
      stays text;
    - a call object nested in other JSON is still recognised (its surroundings are text);
    - an unbalanced ``{`` at the end is text unless it began as a call naming a known tool;
    - whitespace around and between calls is delivered as text like any other (it does
      not count for :attr:`delivered_text`).

    :attr:`blocks` holds the raw text of each recognised call block (valid or not), so
    delivered text and blocks together are exactly the answer.
    """

    def __init__(
        self,
        tools: Sequence[Mapping[str, Any]],
        *,
        choice: str | None = None,
        hold_all: bool = False,
        parallel: bool = True,
    ) -> None:
        self._tools = {t["name"]: t for t in tools}
        self._choice = choice
        self._hold_all = hold_all
        self._parallel = parallel
        self.calls: list[ToolCall] = []
        self.errors: list[str] = []
        self.blocks: list[str] = []
        self.delivered_text = False
        self._raw: list[str] = []
        self._out: list[str | ToolCall] = []
        self._mode = _TEXT
        self._hold: list[str] = []  # the held text, in pieces (joined once, when judged)
        self._bare = True  # bare JSON may be a call (off while rescanning at the end)
        self._finished = False
        self._reset()

    def _reset(self) -> None:
        self._matched = 0  # chars of OPEN or of FENCE seen
        self._info = ""  # a fence's info string
        self._body = 0  # where a fence's body starts in the held text
        self._shape: _Shape | None = None
        self._depth = 0
        self._in_string = False
        self._escape = False
        self._held_len = 0

    @property
    def raw(self) -> str:
        """The whole answer fed so far."""
        return "".join(self._raw)

    def feed(self, text: str) -> list[str | ToolCall]:
        """Take the next piece of the answer; returns what can be delivered now."""
        if self._finished:
            raise RuntimeError("ToolCallParser.feed() after finish()")
        if not text:
            return []
        self._raw.append(text)
        # Fast paths for the common pieces (a token of prose, a token inside a held call),
        # so a long answer in small pieces stays cheap.
        mode = self._mode
        if mode == _TEXT:
            if _TEXT_STOP.search(text) is None:
                if self._hold_all:
                    self._emit(text)
                    return []
                if not self.delivered_text and not text.isspace():
                    self.delivered_text = True
                return [text]
        elif mode == _TAG_BODY or (mode == _FENCE_BODY and self._shape is None):
            if (">" if mode == _TAG_BODY else "`") not in text:
                self._hold_text(text)
                return []
        elif (
            mode == _JSON
            and self._shape is None
            and not self._escape
            and (_STRING_STOP if self._in_string else _STRUCT).search(text) is None
        ):
            self._hold_text(text)
            return []
        self._scan(text)
        return [] if self._hold_all else self._take()

    def finish(self) -> list[str | ToolCall]:
        """The answer ended: judge what is held; returns everything still undelivered."""
        if not self._finished:
            self._finished = True
            while self._mode != _TEXT:
                self._flush()
        return self._take()

    # -- output

    def _take(self) -> list[str | ToolCall]:
        out = self._out
        if not out:
            return []
        self._out = []
        if not self.delivered_text:
            self.delivered_text = any(type(i) is str and not i.isspace() for i in out)
        return out

    def _emit(self, text: str) -> None:
        if text:
            if self._out and type(self._out[-1]) is str:
                self._out[-1] += text
            else:
                self._out.append(text)

    def _held(self) -> str:
        text = "".join(self._hold)
        self._hold, self._held_len = [], 0
        return text

    def _hold_text(self, text: str) -> None:
        if text:
            self._hold.append(text)
            self._held_len += len(text)

    # -- scanning

    def _scan(self, text: str) -> None:
        pieces = [text]  # a stack: a rescan pushes the held text back in front
        while pieces:
            s = pieces.pop()
            i = 0
            while i < len(s):
                i = self._step(s, i, pieces)

    def _release(self, s: str, i: int, pieces: list[str]) -> int:
        """The candidate held is no call: deliver its first char, rescan the rest."""
        held = self._held()
        self._emit(held[:1])
        self._mode = _TEXT
        self._reset()
        pieces.append(s[i:])
        pieces.append(held[1:])
        return len(s)

    def _step(self, s: str, i: int, pieces: list[str]) -> int:
        """Scan ``s`` from ``i`` in the current mode; returns where to go on."""
        return _STEPS[self._mode](self, s, i, pieces)

    def _on_text(self, s: str, i: int, pieces: list[str]) -> int:
        """Plain text: delivered up to the next character that may start a call."""
        m = (_TEXT_STOP if self._bare else _TEXT_STOP_NO_JSON).search(s, i)
        if m is None:
            self._emit(s[i:])
            return len(s)
        j = m.start()
        self._emit(s[i:j])
        char = s[j]
        self._hold_text(char)
        if char == "<":
            self._mode, self._matched = _TAG_OPEN, 1
        elif char == "`":
            self._mode, self._matched = _TICKS, 1
        else:
            self._mode, self._shape = _JSON, _Shape()
            self._shape.step(char)
            self._depth = 1
        return j + 1

    def _on_tag_open(self, s: str, i: int, pieces: list[str]) -> int:
        """A ``<`` that may begin ``<tool_call>``."""
        while i < len(s) and self._matched < len(OPEN):
            if s[i] != OPEN[self._matched]:
                return self._release(s, i, pieces)
            self._hold_text(s[i])
            self._matched += 1
            i += 1
        if self._matched == len(OPEN):
            self._mode = _TAG_BODY
        return i

    def _on_tag_body(self, s: str, i: int, pieces: list[str]) -> int:
        """Inside ``<tool_call>``: held to ``</tool_call>``."""
        end = self._find(s, i, CLOSE)
        if end is None:
            return len(s)
        self._hold_text(s[i:end])
        held = self._held()
        self._mode = _TEXT
        self._reset()
        self._settle(held, held[len(OPEN) : -len(CLOSE)], "tag")
        return end

    def _on_ticks(self, s: str, i: int, pieces: list[str]) -> int:
        """One or two backticks: inline code, or the start of a fence."""
        while i < len(s) and self._matched < 3:
            if s[i] != "`":
                self._emit(self._held())  # one or two backticks: inline code
                self._mode = _TEXT
                self._reset()
                return i
            self._hold_text("`")
            self._matched += 1
            i += 1
        if self._matched == 3:
            self._mode = _FENCE_INFO
        return i

    def _on_fence_info(self, s: str, i: int, pieces: list[str]) -> int:
        """A fence's info string (``json``, ``python``...), up to its newline."""
        while i < len(s):
            char = s[i]
            if char == "\n" or (char in "{[" and not self._info.strip()):
                if self._info.strip().lower() not in _JSON_FENCES:
                    return self._pass_fence(i)
                if char == "\n":
                    self._hold_text(char)
                    i += 1
                self._mode, self._body = _FENCE_BODY, self._held_len
                self._shape = _Shape()
                return i
            if char == "`" or len(self._info) > 40:
                return self._pass_fence(i)  # not a fence opening a block of its own
            self._info += char
            self._hold_text(char)
            i += 1
        return i

    def _on_fence_body(self, s: str, i: int, pieces: list[str]) -> int:
        """A fence that may hold a call: held to its closing fence."""
        start = i
        while self._shape is not None and i < len(s):
            decided = self._shape.step(s[i])
            if decided is False:
                self._hold_text(s[start:i])
                return self._pass_fence(i)
            i += 1
            if decided:
                self._shape = None
        end = self._find(s, start, FENCE)
        if end is None:
            return len(s)
        self._hold_text(s[start:end])
        held = self._held()
        body = held[self._body : -3]
        self._mode = _TEXT
        self._reset()
        self._settle(held, body, "fence")
        return end

    def _on_fence_pass(self, s: str, i: int, pieces: list[str]) -> int:
        """A fence that cannot hold a call: delivered as it comes, to its closing fence."""
        n, j = len(s), i
        while j < n:
            k = s.find("`", j)
            if k < 0:
                self._matched = 0
                break
            if k > j:
                self._matched = 0
            self._matched += 1
            j = k + 1
            if self._matched == 3:
                self._emit(s[i:j])
                self._mode = _TEXT
                self._reset()
                return j
        self._emit(s[i:])
        return n

    def _on_json(self, s: str, i: int, pieces: list[str]) -> int:
        """A bare ``{`` or ``[`` that may be a call: held until balanced, then judged."""
        start = i
        while self._shape is not None and i < len(s):
            decided = self._shape.step(s[i])
            if decided is False:
                return self._release(s, start, pieces)
            i += 1
            if decided:
                self._shape = None
        end = self._balance(s, start)
        if end is None:
            self._hold_text(s[start:])
            return len(s)
        self._hold_text(s[start:end])
        held = self._held()
        self._mode = _TEXT
        self._reset()
        self._settle(held, held, "bare")
        return end

    def _pass_fence(self, i: int) -> int:
        """A fence whose block cannot hold a call: deliver it as it comes."""
        self._emit(self._held())
        self._reset()
        self._mode = _FENCE_PASS
        return i

    def _find(self, s: str, i: int, marker: str) -> int | None:
        """Where ``marker`` ends in ``s`` (searched from ``i``; it may begin in the held
        text). Not found: ``s[i:]`` is held."""
        last, size = marker[-1], len(marker)
        k = s.find(last, i)
        while k >= 0:
            start = k + 1 - size
            if start >= i:
                if s.startswith(marker, start):
                    return k + 1
            elif self._held_tail(i - start) + s[i : k + 1] == marker:
                return k + 1
            k = s.find(last, k + 1)
        self._hold_text(s[i:])
        return None

    def _held_tail(self, n: int) -> str:
        return "".join(self._hold[-n:])[-n:]  # the pieces are never empty

    def _balance(self, s: str, i: int) -> int | None:
        """Where the held JSON value closes in ``s`` (strings and escapes respected)."""
        n = len(s)
        if self._escape and i < n:
            self._escape, i = False, i + 1
        while i < n:
            if self._in_string:
                m = _STRING_STOP.search(s, i)
                if m is None:
                    return None
                i = m.end()
                if m.group() == "\\":
                    if i >= n:
                        self._escape = True
                        return None
                    i += 1
                else:
                    self._in_string = False
            else:
                m = _STRUCT.search(s, i)
                if m is None:
                    return None
                i = m.end()
                char = m.group()
                if char == '"':
                    self._in_string = True
                elif char in "{[":
                    self._depth += 1
                else:
                    self._depth -= 1
                    if self._depth == 0:
                        return i
        return None

    # -- judging

    def _flush(self) -> None:
        """At the end of the answer: settle the held text."""
        mode, body = self._mode, self._body
        call_shaped = mode == _JSON and self._shape is None
        held = self._held()
        self._mode = _TEXT
        self._reset()
        if mode == _TAG_BODY:  # unclosed tags: still meant as a call
            self._settle(held, held[len(OPEN) :], "tag")
        elif mode == _FENCE_BODY:
            self._settle(held, held[body:], "fence")
        elif call_shaped and self._mentioned(held) in self._tools:
            self.errors.append(f"{self._mentioned(held)}: the call's JSON is incomplete")
            self.blocks.append(held)
        elif mode == _JSON:
            # Never clearly a call: text, rescanned for tags and fences but not for bare
            # JSON again, so nested unbalanced braces cannot make the end quadratic.
            self._emit(held[:1])
            self._bare = False
            self._scan(held[1:])
        else:
            self._emit(held)  # a partial tag or fence opening

    def _settle(self, held: str, body: str, where: str) -> None:
        """Judge a complete candidate: its calls are recorded, or it is delivered as text."""
        if self._judge(body, where):
            self.blocks.append(held)
        else:
            self._emit(held)

    def _mentioned(self, text: str) -> str | None:
        m = _MENTION.search(text, 0, 400)
        return m.group(1) if m else None

    def _judge(self, body: str, where: str) -> bool:
        """Record the calls in ``body``; False: it is no call (deliver it as text)."""
        text = body.strip()
        if where == "tag" and text.startswith(FENCE):  # a fence inside the tags
            text = text.partition("\n")[2].rstrip().removesuffix(FENCE)
        try:
            value = _loads(text)
        except ValueError as exc:
            name = self._mentioned(text)
            if where != "tag" and name not in self._tools:
                return False
            problem = "is not valid JSON" if text else "is empty"
            detail = f" ({exc})" if text else ""
            self.errors.append(f"{name + ': ' if name else ''}the tool call {problem}{detail}")
            return True
        items = self._items(value)
        if items is None:
            if where != "tag":
                return False
            self.errors.append(f"<tool_call> holds no call: expected {_FORMAT}")
            return True
        for name, arguments in items:
            self._call(name, arguments)
        return True

    def _items(self, value: Any) -> list[tuple[str, Any]] | None:
        """The (name, arguments) of each call ``value`` holds, or None: it is no call."""
        if isinstance(value, dict) and isinstance(value.get("tool_calls"), list):
            value = value["tool_calls"]
        values = value if isinstance(value, list) else [value]
        items = [self._shape_of(v) for v in values]
        if not items or any(item is None for item in items):
            return None
        return items  # type: ignore[return-value]

    def _shape_of(self, value: Any) -> tuple[str, Any] | None:
        if not isinstance(value, dict):
            return None
        source = value
        function = value.get("function", value.get("function_call"))
        if isinstance(function, dict):
            source, name = function, function.get("name")
        elif isinstance(function, str):
            name = function
        else:
            name = next((value[k] for k in _NAME_KEYS if isinstance(value.get(k), str)), None)
        if not isinstance(name, str):
            return None
        for key in _ARG_KEYS:
            if key in source:
                return name, source[key]
        if name not in self._tools:
            return None  # {"name": "Bob", "age": 3} is data, not a call
        return name, {k: v for k, v in source.items() if k not in _META_KEYS}

    def _call(self, name: str, arguments: Any) -> None:
        tool = self._tools.get(name)
        if tool is None:
            known = ", ".join(self._tools) or "none"
            self.errors.append(f"{name}: no such tool (the tools are: {known})")
            return
        if self._choice is not None and name != self._choice:
            self.errors.append(f"{name}: tool_choice requires a call of {self._choice!r}")
            return
        if isinstance(arguments, str):
            try:
                arguments = _loads(arguments) if arguments.strip() else {}
            except ValueError as exc:
                self.errors.append(f"{name}: the arguments are not valid JSON ({exc})")
                return
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            kind = type(arguments).__name__
            self.errors.append(f"{name}: the arguments must be a JSON object, not {kind}")
            return
        problems = validate(tool.get("parameters") or {}, arguments)
        if problems:
            self.errors.append(f"{name}: {'; '.join(problems)}")
            return
        if not self._parallel and self.calls:
            self.errors.append(f"{name}: parallel_tool_calls is false: only one call allowed")
            return
        call = ToolCall(new_call_id(), name, _dumps(arguments))
        self.calls.append(call)
        self._out.append(call)


_TEXT_STOP = re.compile(r"[<`{\[]")
_TEXT_STOP_NO_JSON = re.compile(r"[<`]")
#: the scanner of each mode, indexed by mode
_STEPS = (
    ToolCallParser._on_text,
    ToolCallParser._on_tag_open,
    ToolCallParser._on_tag_body,
    ToolCallParser._on_ticks,
    ToolCallParser._on_fence_info,
    ToolCallParser._on_fence_body,
    ToolCallParser._on_fence_pass,
    ToolCallParser._on_json,
)
