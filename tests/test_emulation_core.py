"""The pure core of tool-calling and JSON-output emulation: schema validation, the tool
instruction and history rendering, the streaming call parser, and JSON extraction."""

from __future__ import annotations

import json
import random
import re

import pytest

from llmplex.emulation import json_output, schema, tools
from llmplex.emulation.tools import ToolCall, ToolCallParser
from llmplex.errors import InvalidRequestError

# --------------------------------------------------------------------------- schema

WEATHER = {
    "type": "object",
    "properties": {"location": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}},
    "required": ["location"],
    "additionalProperties": False,
}
TREE = {
    "$defs": {
        "node": {
            "type": "object",
            "properties": {
                "value": {"type": "integer"},
                "children": {"type": "array", "items": {"$ref": "#/$defs/node"}},
            },
            "required": ["value"],
        }
    },
    "$ref": "#/$defs/node",
}

SCHEMA_CASES = [
    ({}, {"anything": [1, None]}, []),
    (True, 3, []),
    (False, 3, ["$: no value is allowed here"]),
    (WEATHER, {"location": "Paris"}, []),
    (WEATHER, {"location": 42}, ["$.location: expected string, got number"]),
    (WEATHER, {"unit": "celsius"}, ["$: missing required property 'location'"]),
    (
        WEATHER,
        {"location": "P", "unit": "kelvin"},
        ["$.unit: 'kelvin' is not one of 'celsius', 'fahrenheit'"],
    ),
    (WEATHER, {"location": "P", "extra": 1}, ["$: unexpected property 'extra'"]),
    (WEATHER, [], ["$: expected object, got array"]),
    ({"type": "integer"}, 3, []),
    ({"type": "integer"}, 3.0, []),
    ({"type": "integer"}, 3.5, ["$: expected integer, got number"]),
    ({"type": "integer"}, True, ["$: expected integer, got boolean"]),
    ({"type": "number"}, False, ["$: expected number, got boolean"]),
    ({"type": "boolean"}, 1, ["$: expected boolean, got number"]),
    ({"type": ["string", "null"]}, None, []),
    ({"type": ["string", "null"]}, 1, ["$: expected string or null, got number"]),
    ({"type": "string", "nullable": True}, None, []),
    ({"type": "string", "nullable": True}, 2, ["$: expected string, got number"]),
    (
        {"type": "object", "additionalProperties": {"type": "integer"}},
        {"a": 1, "b": "x"},
        ["$.b: expected integer, got string"],
    ),
    (
        {"properties": {"a b": {"type": "string"}}},
        {"a b": 1},
        ['$["a b"]: expected string, got number'],
    ),
    (
        {"patternProperties": {"^x_": {"type": "integer"}}, "additionalProperties": False},
        {"x_1": 1, "y": 2},
        ["$: unexpected property 'y'"],
    ),
    (
        {"type": "array", "items": {"type": "string"}},
        ["a", 1],
        ["$[1]: expected string, got number"],
    ),
    (
        {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}], "items": False},
        ["a", 1, 2],
        ["$[2]: no item is allowed here"],
    ),
    ({"enum": [1, "a", None]}, 1.0, []),
    ({"enum": [1]}, True, ["$: true is not one of 1"]),
    ({"const": {"a": [1]}}, {"a": [1]}, []),
    ({"const": "x"}, "y", ["$: expected 'x', got 'y'"]),
    ({"anyOf": [{"type": "string"}, {"type": "integer"}]}, 3, []),
    (
        {"anyOf": [{"type": "string"}, {"type": "integer"}]},
        1.5,
        ["$: matches none of the anyOf schemas (nearest: $: expected string, got number)"],
    ),
    (
        {"oneOf": [{"type": "integer"}, {"type": "number"}]},
        1,
        ["$: matches 2 of the oneOf schemas, not exactly one"],
    ),
    ({"oneOf": [{"type": "integer"}, {"type": "string"}]}, "a", []),
    ({"allOf": [{"minimum": 1}, {"maximum": 3}]}, 5, ["$: 5 is greater than maximum 3"]),
    ({"not": {"type": "string"}}, "a", ["$: must not match the schema in 'not'"]),
    ({"minLength": 2, "maxLength": 3}, "a", ["$: shorter than 2 characters"]),
    ({"minLength": 2, "maxLength": 3}, "abcd", ["$: longer than 3 characters"]),
    ({"pattern": "^[a-z]+$"}, "abc", []),
    ({"pattern": "^[a-z]+$"}, "ab1", ["$: 'ab1' does not match the pattern '^[a-z]+$'"]),
    ({"pattern": "(unclosed"}, "anything", []),  # an invalid pattern is ignored
    ({"minimum": 0, "maximum": 10}, -1, ["$: -1 is less than minimum 0"]),
    ({"exclusiveMinimum": 0}, 0, ["$: 0 is at most exclusiveMinimum 0"]),
    ({"exclusiveMaximum": 1}, 1.0, ["$: 1.0 is at least exclusiveMaximum 1"]),
    ({"minItems": 1}, [], ["$: fewer than 1 items"]),
    ({"maxItems": 1}, [1, 2], ["$: more than 1 items"]),
    ({"uniqueItems": True}, [1, {"a": 1}, {"a": 1}], ["$[2]: repeats an earlier item"]),
    ({"uniqueItems": True}, [1, True], []),  # true is not 1 in JSON
    ({"minProperties": 1}, {}, ["$: fewer than 1 properties"]),
    ({"maxProperties": 1}, {"a": 1, "b": 2}, ["$: more than 1 properties"]),
    (
        {"type": "string", "description": "d", "format": "date", "title": "t", "default": 1},
        "not a date",
        [],
    ),
    (TREE, {"value": 1, "children": [{"value": 2, "children": []}]}, []),
    (
        TREE,
        {"value": 1, "children": [{"value": "x"}]},
        ["$.children[0].value: expected integer, got string"],
    ),
    (
        {"definitions": {"n": {"type": "integer"}}, "items": {"$ref": "#/definitions/n"}},
        [1, "2"],
        ["$[1]: expected integer, got string"],
    ),
    ({"$ref": "#/$defs/missing"}, 1, ["$: cannot resolve $ref '#/$defs/missing'"]),
    (
        {"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"},
        1,
        ["$: the schema refers to itself without end"],
    ),
]


@pytest.mark.parametrize(("spec", "value", "expected"), SCHEMA_CASES)
def test_schema_validate(spec, value, expected):
    assert schema.validate(spec, value) == expected


def _nested(depth):
    value: dict = {"value": 0}
    for _ in range(depth):
        value = {"value": 1, "children": [value]}
    return value


def test_schema_depth_is_bounded_not_a_recursion_error():
    assert schema.validate(TREE, _nested(30)) == []
    assert schema.validate({}, _nested(40)) == ["$: nested deeper than 64 levels"]
    deep: list = []
    for _ in range(100_000):  # far beyond Python's recursion limit
        deep = [deep]
    assert schema.validate({"type": "array"}, deep) == ["$: nested deeper than 64 levels"]


def test_schema_error_count_is_bounded():
    errors = schema.validate({"type": "array", "items": {"type": "string"}}, list(range(500)))
    assert len(errors) == schema.MAX_ERRORS
    assert errors[0] == "$[0]: expected string, got number"


# --------------------------------------------------------------------------- tools: prompt

OPENAI_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather now.",
            "parameters": WEATHER,
            "strict": True,
        },
    },
    {"type": "function", "function": {"name": "get_time"}},
    {
        "type": "function",
        "function": {
            "name": "search",
            "description": "Search the web.",
            "parameters": {
                "type": "object",
                "properties": {"query": {"type": "string"}},
                "required": ["query"],
            },
        },
    },
]
TOOLS = tools.function_tools(OPENAI_TOOLS)


def test_function_tools_normalises_tools_and_legacy_functions():
    legacy = [{"name": "f", "parameters": {"type": "object"}}]
    got = tools.function_tools(OPENAI_TOOLS[:2], legacy)
    assert got == [
        {"name": "get_weather", "description": "Weather now.", "parameters": WEATHER},
        {"name": "get_time", "description": "", "parameters": {}},
        {"name": "f", "description": "", "parameters": {"type": "object"}},
    ]
    assert tools.function_tools(functions=legacy) == got[2:]
    assert tools.function_tools() == []


def test_function_tools_refuses_custom_tools():
    with pytest.raises(InvalidRequestError) as info:
        tools.function_tools([OPENAI_TOOLS[0], {"type": "custom", "custom": {"name": "c"}}])
    assert info.value.param == "tools[1].type"


def test_choice_name():
    assert tools.choice_name({"type": "function", "function": {"name": "x"}}) == "x"
    assert tools.choice_name({"name": "legacy"}) == "legacy"
    assert tools.choice_name("auto") is None
    assert tools.choice_name("required") is None


def test_instruction_describes_tools_and_the_one_format():
    text = tools.instruction(TOOLS)
    assert "- get_weather: Weather now." in text
    assert "- get_time: (no description)" in text
    assert f"arguments schema: {json.dumps(WEATHER, separators=(',', ':'))}" in text
    assert '<tool_call>{"name": "<tool name>", "arguments": {<the arguments>}}</tool_call>' in text
    assert "answer normally in plain text" in text
    assert "at most one" not in text
    assert tools.instruction(OPENAI_TOOLS) == text  # OpenAI's shape is taken as well


def test_instruction_tool_choice_and_parallel():
    required = tools.instruction(TOOLS, "required")
    assert "You must call at least one tool" in required
    assert "plain text" not in required
    named = tools.instruction(TOOLS, {"type": "function", "function": {"name": "search"}})
    assert "You must call the tool 'search', exactly once" in named
    single = tools.instruction(TOOLS, "auto", parallel_tool_calls=False)
    assert "Make at most one tool call per answer." in single
    with pytest.raises(InvalidRequestError, match="not among the tools"):
        tools.instruction(TOOLS, {"type": "function", "function": {"name": "nope"}})
    with pytest.raises(InvalidRequestError, match="cannot be emulated"):
        tools.instruction(TOOLS, "none")


def test_new_call_id():
    ids = {tools.new_call_id() for _ in range(50)}
    assert len(ids) == 50
    assert all(re.fullmatch(r"call_[0-9a-f]{24}", i) for i in ids)


HISTORY = [
    {"role": "developer", "content": "Be brief."},
    {
        "role": "user",
        "content": [{"type": "text", "text": "Weather in "}, {"type": "text", "text": "Paris?"}],
    },
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"location": "Paris"}'},
            },
            {
                "id": "call_2",
                "type": "function",
                "function": {"name": "search", "arguments": "not json"},
            },
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "18 C"},
    {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "x"}]},
    {"role": "assistant", "content": "It is 18 C."},
]


def test_render_messages_history_as_text():
    got = tools.render_messages(HISTORY, "INSTRUCTION")
    assert got == [
        {"role": "system", "content": "Be brief.\n\nINSTRUCTION"},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": '<tool_call>{"name": "get_weather", "arguments": {"location": "Paris"}}'
            '</tool_call>\n<tool_call>{"name": "search", "arguments": "not json"}</tool_call>',
        },
        {
            "role": "user",
            "content": '<tool_result name="get_weather" tool_call_id="call_1">18 C</tool_result>',
        },
        {
            "role": "user",
            "content": '<tool_result name="search" tool_call_id="call_2">x</tool_result>',
        },
        {"role": "assistant", "content": "It is 18 C."},
    ]


def test_render_messages_instruction_placement_and_legacy_shapes():
    messages = [
        {"role": "user", "content": "hi", "name": "ann"},
        {
            "role": "assistant",
            "content": "Let me look.",
            "function_call": {"name": "get_time", "arguments": "{}"},
        },
        {"role": "function", "name": "get_time", "content": "12:00"},
        {"role": "system", "content": "late system"},
        {"role": "user", "content": "thanks"},
        {"role": "user", "content": "again"},
    ]
    got = tools.render_messages(messages, "INSTRUCTION")
    assert got == [
        {"role": "system", "content": "INSTRUCTION"},
        {"role": "user", "content": "hi", "name": "ann"},
        {
            "role": "assistant",
            "content": 'Let me look.\n<tool_call>{"name": "get_time", "arguments": {}}</tool_call>',
        },
        {"role": "user", "content": '<tool_result name="get_time">12:00</tool_result>'},
        {"role": "system", "content": "late system"},
        {"role": "user", "content": "thanks"},
        {"role": "user", "content": "again"},  # consecutive messages stay separate
    ]
    assert tools.render_messages(messages[4:], None) == got[5:]
    assert messages[1]["function_call"] == {"name": "get_time", "arguments": "{}"}  # unchanged


def test_render_messages_refuses_non_text_parts():
    image = {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
    with pytest.raises(InvalidRequestError) as info:
        tools.render_messages([{"role": "user", "content": [image]}], None)
    assert info.value.param == "messages[0].content[0]"


def test_correction_lists_problems_and_restates_the_format():
    text = tools.correction(["get_weather: $: missing required property 'location'"])
    assert "- get_weather: $: missing required property 'location'" in text
    assert '<tool_call>{"name": "<tool name>"' in text
    assert "plain text" in text
    required = tools.correction([], required=True)
    assert "- the answer contains no tool call" in required
    assert "You must call at least one tool." in required
    assert "You must call the tool 'search'." in tools.correction(["x"], choice="search")


# --------------------------------------------------------------------------- the parser


def call(name, **arguments):
    return (name, arguments)


PARIS = call("get_weather", location="Paris")
TAG = '<tool_call>{"name": "get_weather", "arguments": {"location": "Paris"}}</tool_call>'

# (answer, the text delivered, the calls, the errors (substrings, in order))
PARSER_CASES = [
    # the requested format
    (TAG, "", [PARIS], []),
    ("Let me check.\n" + TAG, "Let me check.\n", [PARIS], []),
    (
        TAG + "\n" + TAG.replace("Paris", "Rome"),
        "\n",
        [PARIS, call("get_weather", location="Rome")],
        [],
    ),
    (TAG[: -len("</tool_call>")], "", [PARIS], []),  # unclosed at the end
    (TAG + " Done.", " Done.", [PARIS], []),
    (
        '<tool_call>\n```json\n{"name": "get_time", "arguments": {}}\n```\n</tool_call>',
        "",
        [call("get_time")],
        [],
    ),
    (
        (
            '<tool_call>{"name": "get_weather", "arguments": "{\\"location\\": \\"Paris\\"}"}'
            "</tool_call>"
        ),
        "",
        [PARIS],
        [],
    ),
    # fenced blocks
    (
        'Sure:\n```json\n{"name": "get_weather", "arguments": {"location": "Paris"}}\n```\n',
        "Sure:\n\n",
        [PARIS],
        [],
    ),
    ('```\n{"name": "get_time", "arguments": {}}\n```', "", [call("get_time")], []),
    ('```tool_call\n{"name": "get_time", "arguments": {}}\n```', "", [call("get_time")], []),
    (
        (
            '```json\n[{"name": "get_time", "arguments": {}},\n {"name": "search", "arguments": '
            '{"query": "q"}}]\n```'
        ),
        "",
        [call("get_time"), call("search", query="q")],
        [],
    ),
    ('```json\n{"name": "get_time", "arguments": {}}', "", [call("get_time")], []),  # unclosed
    # bare JSON
    ('{"name": "get_weather", "arguments": {"location": "Paris"}}', "", [PARIS], []),
    (
        'I will search. {"name": "search", "arguments": {"query": "a } \\" { b"}} ok',
        "I will search.  ok",
        [call("search", query='a } " { b')],
        [],
    ),
    (
        (
            '[{"name": "get_time", "arguments": {}}, {"name": "get_weather", "arguments": '
            '{"location": "Paris"}}]'
        ),
        "",
        [call("get_time"), PARIS],
        [],
    ),
    (
        (
            '{"tool_calls": [{"id": "c1", "type": "function", "function": {"name": "get_weather", '
            '"arguments": "{\\"location\\":\\"Paris\\"}"}}]}'
        ),
        "",
        [PARIS],
        [],
    ),
    ('\n  {  "name" : "get_time" , "arguments" : { } }\n', "\n  \n", [call("get_time")], []),
    # the call shapes models write
    ('{"name": "get_weather", "parameters": {"location": "Paris"}}', "", [PARIS], []),
    ('{"function": {"name": "get_weather", "arguments": {"location": "Paris"}}}', "", [PARIS], []),
    (
        (
            '{"type": "function", "function": {"name": "get_weather", "arguments": '
            '"{\\"location\\": \\"Paris\\"}"}}'
        ),
        "",
        [PARIS],
        [],
    ),
    ('{"function_call": {"name": "get_time", "arguments": "{}"}}', "", [call("get_time")], []),
    ('{"tool": "get_weather", "args": {"location": "Paris"}}', "", [PARIS], []),
    ('{"tool": "get_weather", "tool_input": {"location": "Paris"}}', "", [PARIS], []),
    ('{"tool_name": "get_weather", "input": {"location": "Paris"}}', "", [PARIS], []),
    ('{"function": "get_weather", "arguments": {"location": "Paris"}}', "", [PARIS], []),
    ('{"arguments": {"location": "Paris"}, "name": "get_weather"}', "", [PARIS], []),
    ('{"name": "get_weather", "location": "Paris"}', "", [PARIS], []),  # flattened arguments
    ('{"name": "get_time"}', "", [call("get_time")], []),  # nothing required: {}
    ('{"name": "get_time", "arguments": null}', "", [call("get_time")], []),
    ('{"name": "get_time", "arguments": ""}', "", [call("get_time")], []),
    # ordinary text and data, released unchanged
    ("Just prose, nothing else.", "Just prose, nothing else.", [], []),
    ('The answer: {"answer": 42}.', 'The answer: {"answer": 42}.', [], []),
    ('{"name": "Bob", "age": 3}', '{"name": "Bob", "age": 3}', [], []),
    ('[{"name": "Bob"}, {"name": "Al"}]', '[{"name": "Bob"}, {"name": "Al"}]', [], []),
    ("a < b, c <= d, <b>bold</b>, <tool>x", "a < b, c <= d, <b>bold</b>, <tool>x", [], []),
    (
        "Use `x` and ``y`` and [a link](u) or [1, 2] and {x}.",
        "Use `x` and ``y`` and [a link](u) or [1, 2] and {x}.",
        [],
        [],
    ),
    (
        '```python\nprint({"name": "get_time", "arguments": {}})\n```\nafter',
        '```python\nprint({"name": "get_time", "arguments": {}})\n```\nafter',
        [],
        [],
    ),
    ('```json\n{"city": "Paris"}\n```', '```json\n{"city": "Paris"}\n```', [], []),
    (
        '```json\n{"name": "Bob", "age": 3}\n```\n',
        '```json\n{"name": "Bob", "age": 3}\n```\n',
        [],
        [],
    ),
    ("````\nfour\n````", "````\nfour\n````", [], []),
    ('{"a": b}', '{"a": b}', [], []),  # balanced, not JSON, no known tool named
    ('{"name": "Bob", "x": ', '{"name": "Bob", "x": ', [], []),  # unbalanced at the end
    ("ends with {", "ends with {", [], []),
    ("ends with <tool_ca", "ends with <tool_ca", [], []),
    ("ends with ``", "ends with ``", [], []),
    ("ends with ```json", "ends with ```json", [], []),
    ('Grüße — {"ünï": 1} 🌍', 'Grüße — {"ünï": 1} 🌍', [], []),
    ('{"name": "Bob", ' + TAG, '{"name": "Bob", ', [PARIS], []),  # an unbalanced { before
    ('{"result": ' + TAG[11:-12] + "}", '{"result": }', [PARIS], []),  # nested: recognised
    # invalid calls: recorded, not delivered
    (
        '<tool_call>{"name": "send_email", "arguments": {}}</tool_call>',
        "",
        [],
        ["send_email: no such tool (the tools are: get_weather, get_time, search)"],
    ),
    ('{"name": "send_email", "arguments": {"to": "x"}}', "", [], ["send_email: no such tool"]),
    (
        (
            '<tool_call>{"name": "get_weather", "arguments": {"location": "P", "unit": "kelvin"}}'
            "</tool_call>"
        ),
        "",
        [],
        ["get_weather: $.unit: 'kelvin' is not one of 'celsius', 'fahrenheit'"],
    ),
    ('{"name": "get_weather"}', "", [], ["get_weather: $: missing required property 'location'"]),
    (
        '{"name": "get_weather", "arguments": "{location: Paris}"}',
        "",
        [],
        ["get_weather: the arguments are not valid JSON"],
    ),
    (
        '{"name": "get_weather", "arguments": ["Paris"]}',
        "",
        [],
        ["get_weather: the arguments must be a JSON object, not list"],
    ),
    (
        '{"name": "get_weather", "arguments": {"location": NaN}}',
        "",
        [],
        ["get_weather: the tool call is not valid JSON"],
    ),
    (
        "Calling. " + TAG + '<tool_call>{"name": "search", "arguments": {}}</tool_call>',
        "Calling. ",
        [PARIS],
        ["search: $: missing required property 'query'"],
    ),
    # malformed JSON
    (
        '<tool_call>{"name": "get_weather", "arguments": {</tool_call>',
        "",
        [],
        ["get_weather: the tool call is not valid JSON"],
    ),
    ("<tool_call></tool_call>", "", [], ["the tool call is empty"]),
    ('<tool_call>{"location": "Paris"}</tool_call>', "", [], ["<tool_call> holds no call"]),
    (
        '<tool_call>{"name": "get_weather", "argum',
        "",
        [],
        ["get_weather: the tool call is not valid JSON"],
    ),
    (
        '{"name": "get_weather", "arguments": {"location": "Pa',
        "",
        [],
        ["get_weather: the call's JSON is incomplete"],
    ),
    (
        "{'name': 'get_weather', 'arguments': {}}",
        "{'name': 'get_weather', 'arguments': {}}",
        [],
        [],
    ),
    (
        '{"name": "get_weather", "arguments": {\'location\': \'P\'}}',
        "",
        [],
        ["get_weather: the tool call is not valid JSON"],
    ),
]


def _chunkings(answer, seed):
    yield [answer]
    yield list(answer)
    for cut in range(1, len(answer)):
        yield [answer[:cut], answer[cut:]]
    rng = random.Random(seed)
    for _ in range(10):
        cuts = sorted(rng.sample(range(1, len(answer)), min(len(answer) - 1, 6)))
        yield [answer[a:b] for a, b in zip([0, *cuts], [*cuts, len(answer)], strict=True)]


def _run(chunks, **options):
    parser = ToolCallParser(TOOLS, **options)
    items = []
    for chunk in chunks:
        items += parser.feed(chunk)
    items += parser.finish()
    return parser, items


def _sequence(items):
    """The items with adjacent text merged and calls as (name, arguments): what must not
    depend on the chunking."""
    out: list = []
    for item in items:
        if isinstance(item, str):
            if out and isinstance(out[-1], str):
                out[-1] += item
            elif item:
                out.append(item)
        else:
            assert isinstance(item, ToolCall)
            assert re.fullmatch(r"call_[0-9a-f]{24}", item.id)
            assert item.arguments == json.dumps(
                json.loads(item.arguments), ensure_ascii=False, separators=(",", ":")
            )
            out.append((item.name, json.loads(item.arguments)))
    return out


def _without_blocks(answer, blocks):
    """``answer`` with each block removed, left to right (each must be found in order)."""
    rest, at = [], 0
    for block in blocks:
        found = answer.find(block, at)
        assert found >= 0, (block, answer)
        rest.append(answer[at:found])
        at = found + len(block)
    return "".join(rest) + answer[at:]


@pytest.mark.parametrize(("answer", "text", "calls", "errors"), PARSER_CASES)
def test_parser_cases_under_every_chunking(answer, text, calls, errors):
    reference = None
    for chunks in _chunkings(answer, seed=len(answer)):
        parser, items = _run(chunks)
        sequence = _sequence(items)
        delivered = "".join(i for i in sequence if isinstance(i, str))
        assert delivered == text, chunks
        assert [i for i in sequence if not isinstance(i, str)] == calls, chunks
        assert len(parser.errors) == len(errors), (chunks, parser.errors)
        for got, expected in zip(parser.errors, errors, strict=True):
            assert expected in got
        assert [(c.name, json.loads(c.arguments)) for c in parser.calls] == calls
        # nothing lost, nothing twice: the text and the call blocks are the answer
        assert _without_blocks(answer, parser.blocks) == delivered
        assert len(delivered) + sum(map(len, parser.blocks)) == len(answer)
        assert parser.raw == answer
        assert parser.delivered_text == bool(text.strip())
        if reference is None:
            reference = sequence
        assert sequence == reference, chunks


def test_plain_text_is_delivered_at_once():
    parser = ToolCallParser(TOOLS)
    assert parser.feed("Hello") == ["Hello"]
    assert parser.delivered_text
    assert parser.feed(" world, no newline yet") == [" world, no newline yet"]
    assert parser.feed("a <") == ["a "]  # the < waits for one more character
    assert parser.feed(" b") == ["< b"]
    assert parser.feed("c < d") == ["c < d"]
    assert parser.finish() == []


def test_a_brace_is_held_only_until_it_cannot_be_a_call():
    parser = ToolCallParser(TOOLS)
    assert parser.feed("Result: {") == ["Result: "]
    assert parser.feed(' "ar') == []  # may still become "arguments"
    assert parser.feed("t") == ['{ "art']
    assert parser.feed('": 42}') == ['": 42}']
    parser = ToolCallParser(TOOLS)
    assert parser.feed("[") == []
    assert parser.feed("1") == ["[1"]
    assert ToolCallParser(TOOLS).feed("{x}") == ["{x}"]
    assert ToolCallParser(TOOLS).feed('{"name": "Bob"}') == ['{"name": "Bob"}']


def test_a_call_is_held_until_complete_and_then_comes_out_as_a_call():
    parser = ToolCallParser(TOOLS)
    assert parser.feed('Here {"name": "get_weather", "arguments": {"location": "Pa') == ["Here "]
    assert parser.delivered_text and parser.feed("") == []
    [item] = parser.feed('ris"}}')
    assert isinstance(item, ToolCall) and item.name == "get_weather"
    assert json.loads(item.arguments) == {"location": "Paris"}
    assert parser.feed(" bye") == [" bye"]
    assert parser.finish() == []
    assert parser.calls == [item]


def test_tags_and_fences_stream():
    parser = ToolCallParser(TOOLS)
    assert parser.feed("<tool_") == []
    assert parser.feed('call>{"name": "get_time", "arguments": {}}</tool_') == []
    [item] = parser.feed("call>")
    assert item.name == "get_time" and item.arguments == "{}"
    # a fence that cannot hold a call is released once its info line is complete
    parser = ToolCallParser(TOOLS)
    assert parser.feed("```pyth") == []
    assert parser.feed("on\nprint(1)") == ["```python\nprint(1)"]
    assert parser.feed("\n```\n") == ["\n```\n"]
    # a json fence is released as soon as its content cannot be a call
    parser = ToolCallParser(TOOLS)
    assert parser.feed('```json\n{"na') == []
    assert parser.feed('me": "Bob"') == []  # may be a call: held to the closing fence
    assert parser.feed("}\n") == []
    assert parser.feed("```") == ['```json\n{"name": "Bob"}\n```']
    parser = ToolCallParser(TOOLS)
    assert parser.feed('```json\n{"city"') == ['```json\n{"city"']
    assert parser.feed(': "Paris"}\n```') == [': "Paris"}\n```']


def test_hold_all_delivers_nothing_before_finish():
    answer = "Thinking... " + TAG + " and done."
    for chunks in ([answer], list(answer)):
        parser = ToolCallParser(TOOLS, hold_all=True)
        assert all(parser.feed(chunk) == [] for chunk in chunks)
        assert not parser.delivered_text
        assert parser.calls and parser.calls[0].name == "get_weather"
        items = parser.finish()
        assert _sequence(items) == ["Thinking... ", PARIS, " and done."]
        assert parser.delivered_text


def test_forced_choice():
    answer = TAG + '<tool_call>{"name": "search", "arguments": {"query": "x"}}</tool_call>'
    parser, items = _run([answer], choice="search")
    assert _sequence(items) == [call("search", query="x")]
    assert parser.errors == ["get_weather: tool_choice requires a call of 'search'"]


def test_parallel_false_allows_one_call():
    answer = TAG + "\n" + TAG.replace("Paris", "Rome")
    parser, items = _run([answer], parallel=False)
    assert _sequence(items) == [PARIS, "\n"]
    assert parser.errors == ["get_weather: parallel_tool_calls is false: only one call allowed"]


def test_whitespace_only_text_is_not_delivered_text():
    parser, items = _run(["\n", TAG, "\n\n"])
    assert _sequence(items) == ["\n", PARIS, "\n\n"]
    assert not parser.delivered_text


def test_feed_after_finish_is_an_error():
    parser = ToolCallParser(TOOLS)
    parser.finish()
    with pytest.raises(RuntimeError):
        parser.feed("x")


def test_large_answers_in_one_character_pieces_stay_linear():
    # Quadratic rescans would take hours here; linear work takes seconds at most.
    prose = (
        "Plain prose, with a < b or `code` or [links](u) every now and then, "
        "and long stretches of ordinary words between them. " * 17_000
    )  # 2 MB
    parser = ToolCallParser(TOOLS)
    delivered = [item for char in prose for item in parser.feed(char)] + parser.finish()
    assert "".join(delivered) == prose and parser.calls == []
    query = 'x\\"{[' * 180_000  # 1 MB of argument with escapes and brackets
    answer = '<tool_call>{"name": "search", "arguments": {"query": "' + query + '"}}'
    parser = ToolCallParser(TOOLS)
    for char in answer:
        parser.feed(char)
    [item] = parser.finish()
    assert json.loads(item.arguments)["query"] == 'x"{[' * 180_000
    bare = '{"name": "search", "arguments": {"query": "' + query + '"}}'
    parser = ToolCallParser(TOOLS)
    items = [item for char in bare for item in parser.feed(char)]
    assert [i.name for i in items] == ["search"] and parser.finish() == []


def test_many_unbalanced_braces_at_the_end_stay_linear():
    answer = '{"name": "Bob", ' * 50_000 + TAG
    _, items = _run([answer])
    assert _sequence(items) == ['{"name": "Bob", ' * 50_000, PARIS]


# --------------------------------------------------------------------------- json output

POINT = {
    "type": "object",
    "properties": {"x": {"type": "integer"}, "y": {"type": "integer"}},
    "required": ["x", "y"],
    "additionalProperties": False,
}
JSON_SCHEMA = {
    "type": "json_schema",
    "json_schema": {"name": "point", "description": "A point.", "schema": POINT, "strict": True},
}
JSON_OBJECT = {"type": "json_object"}


def test_json_instruction():
    text = json_output.instruction(JSON_OBJECT)
    assert "one JSON object only" in text and "no code fence" in text
    text = json_output.instruction(JSON_SCHEMA)
    assert "'point' (A point.)" in text
    assert json.dumps(POINT, separators=(",", ":")) in text
    assert "Follow the schema exactly" in text and "no prose" in text
    loose = {"type": "json_schema", "json_schema": {"name": "p", "schema": POINT}}
    assert "Follow the schema exactly" not in json_output.instruction(loose)
    with pytest.raises(ValueError, match="needs no emulation"):
        json_output.instruction({"type": "text"})


@pytest.mark.parametrize(
    ("text", "value", "source"),
    [
        ('{"x": 1, "y": 2}', {"x": 1, "y": 2}, '{"x": 1, "y": 2}'),
        ('  \n{"x": 1}\n ', {"x": 1}, '{"x": 1}'),
        ("[1, 2]", [1, 2], "[1, 2]"),
        ("42", 42, "42"),
        ('Here it is:\n```json\n{"x": 1}\n```\nEnjoy.', {"x": 1}, '{"x": 1}'),
        ('```\n[{"a": 1}]\n```', [{"a": 1}], '[{"a": 1}]'),
        ('```json\n{"x": 1}', {"x": 1}, '{"x": 1}'),  # a fence left open
        ('```json\nnot json\n```\n```json\n{"x": 3}\n```', {"x": 3}, '{"x": 3}'),
        (
            'Sure! The point is {"x": 1, "y": {"z": "}"}} as asked.',
            {"x": 1, "y": {"z": "}"}},
            '{"x": 1, "y": {"z": "}"}}',
        ),
        ('See [1] and {bad} then {"x": 5}.', {"x": 5}, '{"x": 5}'),  # an object before an array
        ("Values: [1, 2, 3] done", [1, 2, 3], "[1, 2, 3]"),
    ],
)
def test_json_extract(text, value, source):
    assert json_output.extract(text) == (value, source)


@pytest.mark.parametrize("text", ["", "no json here", "{unbalanced", '{"x": NaN}', "[1, 2"])
def test_json_extract_finds_nothing(text):
    with pytest.raises(ValueError, match="no JSON value found in the answer"):
        json_output.extract(text)


@pytest.mark.parametrize(
    ("response_format", "text", "output", "problems"),
    [
        (JSON_OBJECT, 'Here: {"a": "ü", "b": [1, 2]}', '{"a":"ü","b":[1,2]}', []),
        (JSON_OBJECT, "[1, 2]", "[1,2]", ["the answer must be a JSON object, not an array"]),
        (JSON_OBJECT, '"text"', '"text"', ["the answer must be a JSON object, not a string"]),
        (JSON_OBJECT, "nothing", None, ["no JSON value found in the answer: 'nothing'"]),
        (JSON_SCHEMA, '```json\n{"x": 1, "y": 2}\n```', '{"x":1,"y":2}', []),
        (
            JSON_SCHEMA,
            '{"x": 1, "y": "2", "z": 0}',
            '{"x":1,"y":"2","z":0}',
            ["$.y: expected integer, got string", "$: unexpected property 'z'"],
        ),
        (JSON_SCHEMA, '{"x": 1}', '{"x":1}', ["$: missing required property 'y'"]),
        ({"type": "json_schema", "json_schema": {"name": "any"}}, "[true]", "[true]", []),
    ],
)
def test_json_check(response_format, text, output, problems):
    assert json_output.check(response_format, text) == (output, problems)


def test_json_correction():
    text = json_output.correction(["$.y: expected integer, got string"], JSON_SCHEMA)
    assert "- $.y: expected integer, got string" in text
    assert json.dumps(POINT, separators=(",", ":")) in text
    assert "- it holds no JSON" in json_output.correction([], JSON_OBJECT)
