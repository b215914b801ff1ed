"""Structured output: the request change per model family, partial parsing, validation, repair."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel, Field

from aiostream_chat import Message, OutputValidationError, TextBlock, ToolUseBlock
from aiostream_chat._output import OUTPUT_TOOL, OutputSpec, native_output_supported

NOVA = "us.amazon.nova-micro-v1:0"
CLAUDE_45 = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
CLAUDE_4 = "anthropic.claude-sonnet-4-20250514-v1:0"


class Person(BaseModel):
    """A person mentioned in the text."""

    name: str
    age: int = Field(ge=0)
    email: str | None = None


def test_native_output_is_used_where_bedrock_supports_it() -> None:
    """Claude 4.5+ and the listed open-weight families: native; Nova and older Claude: tool."""
    assert native_output_supported(CLAUDE_45)
    assert native_output_supported("global.anthropic.claude-opus-4-6-v1")
    assert native_output_supported("anthropic.claude-haiku-4-5-20251001-v1:0")
    assert native_output_supported("openai.gpt-oss-120b-1:0")
    assert native_output_supported("qwen.qwen3-32b-v1:0")
    assert not native_output_supported(CLAUDE_4)
    assert not native_output_supported("anthropic.claude-opus-4-1-20250805-v1:0")
    assert not native_output_supported("anthropic.claude-3-7-sonnet-20250219-v1:0")
    assert not native_output_supported(NOVA)


def test_native_request_carries_the_schema_as_a_json_string() -> None:
    """outputConfig.textFormat json_schema, objects closed with additionalProperties false."""
    spec = OutputSpec(Person, model_id=CLAUDE_45)
    assert spec.mode == "native"
    body = spec.apply({"messages": []})
    fmt = body["outputConfig"]["textFormat"]
    assert fmt["type"] == "json_schema"
    schema = json.loads(fmt["structure"]["jsonSchema"]["schema"])
    assert schema["required"] == ["name", "age"] and schema["additionalProperties"] is False
    assert fmt["structure"]["jsonSchema"]["name"] == "Person"
    assert "toolConfig" not in body


def test_tool_request_forces_the_output_tool() -> None:
    """Without native support the answer is a forced tool; with other tools, choice is any."""
    spec = OutputSpec(Person, model_id=NOVA)
    assert spec.mode == "tool"
    body = spec.apply({"messages": []})
    (only,) = body["toolConfig"]["tools"]
    assert only["toolSpec"]["name"] == OUTPUT_TOOL
    assert only["toolSpec"]["inputSchema"]["json"]["required"] == ["name", "age"]
    assert body["toolConfig"]["toolChoice"] == {"tool": {"name": OUTPUT_TOOL}}
    other = {"toolSpec": {"name": "search", "description": "s", "inputSchema": {"json": {}}}}
    mixed = spec.apply({"toolConfig": {"tools": [other]}})
    assert [t["toolSpec"]["name"] for t in mixed["toolConfig"]["tools"]] == ["search", OUTPUT_TOOL]
    assert mixed["toolConfig"]["toolChoice"] == {"any": {}}


def test_thinking_on_an_anthropic_model_without_native_output_is_refused() -> None:
    """A forced tool with thinking is refused by Anthropic: ValueError before any I/O."""
    with pytest.raises(ValueError, match="thinking"):
        OutputSpec(Person, model_id=CLAUDE_4, thinking=True)
    assert OutputSpec(Person, model_id=CLAUDE_45, thinking=True).mode == "native"
    assert OutputSpec(Person, model_id=NOVA, thinking=True).mode == "tool"


def test_non_object_types_are_wrapped_in_a_value_field() -> None:
    """list[int] has no object schema: the tool input is {"value": [...]} and is unwrapped."""
    spec = OutputSpec(list[int], model_id=NOVA)
    assert spec.schema["properties"]["value"]["type"] == "array"
    call = ToolUseBlock(tool_use_id="t", name=OUTPUT_TOOL, input={"value": [1, 2]})
    assert spec.validate(Message(role="assistant", content=(call,))) == [1, 2]


def test_bad_output_types_and_retries_are_refused() -> None:
    """Something pydantic cannot build a schema for raises TypeError at the call."""
    with pytest.raises(TypeError, match="output must be"):
        OutputSpec(object(), model_id=NOVA)
    with pytest.raises(ValueError, match="output_retries"):
        OutputSpec(Person, model_id=NOVA, retries=-1)


def test_partial_json_parses_as_it_grows() -> None:
    """Incomplete JSON yields the fields so far, a half string included."""
    spec = OutputSpec(Person, model_id=CLAUDE_45)
    raw = json.dumps({"name": "Ada Lovelace", "age": 36})
    seen: list[dict[str, Any]] = []
    for end in range(1, len(raw) + 1):
        value = spec.partial(raw[:end])
        if value is not None and (not seen or seen[-1] != value):
            seen.append(value)
    assert seen[0] == {}
    assert {"name": "Ada"} in seen
    assert seen[-1] == {"name": "Ada Lovelace", "age": 36}


def test_invalid_answers_produce_a_repair_message_and_then_an_error() -> None:
    """Validation errors go back to the model; the final error carries raw text and errors."""
    native = OutputSpec(Person, model_id=CLAUDE_45)
    message = Message.assistant('{"name": "Ada", "age": -1}')
    value, errors = native.parse(message)
    assert value is None and errors[0]["loc"] == ("age",)
    repair = native.repair(message, errors)
    assert repair.role == "user" and "age: Input should be greater than or equal to 0" in (
        repair.text
    )
    error = native.failure(message, errors)
    assert isinstance(error, OutputValidationError)
    assert error.raw_text == '{"name": "Ada", "age": -1}' and error.errors == errors

    tool = OutputSpec(Person, model_id=NOVA)
    call = ToolUseBlock(tool_use_id="t9", name=OUTPUT_TOOL, input={"name": "Ada"})
    message = Message(role="assistant", content=(TextBlock(text="Here."), call))
    value, errors = tool.parse(message)
    assert value is None and errors[0]["type"] == "missing"
    (result,) = tool.repair(message, errors).content
    assert result.type == "tool_result" and result.status == "error"
    assert result.tool_use_id == "t9"
    assert "age: Field required" in result.content[0]["text"]


def test_valid_answers_parse_into_the_model() -> None:
    """A native answer is the text; a tool answer is the forced call's input."""
    native = OutputSpec(Person, model_id=CLAUDE_45)
    assert native.parse(Message.assistant('{"name": "Ada", "age": 36}')) == (
        Person(name="Ada", age=36),
        [],
    )
    not_json = native.parse(Message.assistant("Ada is 36."))
    assert not_json[0] is None and not_json[1][0]["type"] == "invalid_answer"
