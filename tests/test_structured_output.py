"""Structured output: the request change per model family, partial parsing, validation, repair."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel, Field

from aiostream_chat import Message, OutputDelta, OutputValidationError, TextBlock, ToolUseBlock
from aiostream_chat._output import OUTPUT_TOOL, OutputSpec, native_output_supported
from aiostream_chat.testing import FakeBedrock, structured, tool_results

from .conftest import MakeConv

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


# -- through the emulator --------------------------------------------------------------------


async def test_send_with_output_uses_a_forced_tool_and_parses_the_reply(
    fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """Nova has no native structured output: the answer is the forced tool's input."""
    fake_bedrock.responder = structured({"name": "Ada", "age": 36})
    conv = make_conv(NOVA)
    result = await conv.send("Ada is 36.", output=Person)
    assert result.output == Person(name="Ada", age=36)
    body = fake_bedrock.requests[0].body
    assert body["toolConfig"]["toolChoice"] == {"tool": {"name": OUTPUT_TOOL}}
    assert "outputConfig" not in body
    # history keeps the answer as text, so the next turn needs no tool result for it
    assert conv.history[-1].content == (TextBlock(text='{"name":"Ada","age":36}'),)
    assert result.message == conv.history[-1] and len(result.messages) == 2
    follow_up = await conv.send("And then?")
    assert follow_up.output is None and len(conv.history) == 4


async def test_native_output_streams_partial_objects(
    fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """Claude 4.5 gets outputConfig; OutputDelta events grow field by field as JSON arrives."""
    fake_bedrock.responder = structured({"name": "Ada Lovelace", "age": 36}, chunks=8)
    conv = make_conv(CLAUDE_45)
    stream = conv.stream("Ada Lovelace died at 36.", output=Person)
    partials = [e.partial async for e in stream.events() if isinstance(e, OutputDelta)]
    result = await stream.get_reply()
    assert "outputConfig" in fake_bedrock.requests[0].body
    assert len(partials) >= 3
    assert any(p.get("name", "").startswith("Ada") and "age" not in p for p in partials)
    assert partials[-1] == {"name": "Ada Lovelace", "age": 36}
    assert result.output == Person(name="Ada Lovelace", age=36)
    assert stream.text == '{"name": "Ada Lovelace", "age": 36}'


async def test_forced_tool_answer_streams_partial_objects(
    fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """In tool mode the partial JSON comes from the forced tool's input fragments."""
    fake_bedrock.responder = structured({"name": "Grace Hopper", "age": 85}, chunks=6)
    stream = make_conv(NOVA).stream("Grace Hopper, 85.", output=Person)
    partials = [e.partial async for e in stream.events() if isinstance(e, OutputDelta)]
    assert partials[-1] == {"name": "Grace Hopper", "age": 85} and len(partials) >= 3
    assert (await stream.get_reply()).output == Person(name="Grace Hopper", age=85)


async def test_an_invalid_answer_is_repaired_once(
    fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """The validation errors go back as the forced tool's error result; the fix is accepted."""
    fake_bedrock.responder = structured({"name": "Ada"}, {"name": "Ada", "age": 36})
    conv = make_conv(NOVA)
    result = await conv.send("Ada is 36.", output=Person)
    assert result.output == Person(name="Ada", age=36)
    assert len(fake_bedrock.requests) == 2
    (sent,) = tool_results(fake_bedrock.requests[1])
    assert sent["status"] == "error" and "age: Field required" in sent["content"][0]["text"]
    assert len(result.messages) == 4 and conv.history == result.messages
    assert result.metrics.attempts == 2


async def test_a_native_answer_that_stays_invalid_raises(
    fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """After output_retries repairs: OutputValidationError with the raw text; no history."""
    fake_bedrock.responder = structured('{"name": "Ada", "age": "old"}')
    conv = make_conv(CLAUDE_45)
    with pytest.raises(OutputValidationError) as caught:
        await conv.send("Ada?", output=Person)
    error = caught.value
    assert error.raw_text == '{"name": "Ada", "age": "old"}'
    assert error.errors[0]["loc"] == ("age",) and error.errors[0]["type"] == "int_parsing"
    assert len(fake_bedrock.requests) == 2
    repair = fake_bedrock.requests[1].body["messages"][-1]["content"][0]["text"]
    assert "age: Input should be a valid integer" in repair
    assert conv.history == () and not conv.busy


async def test_output_retries_zero_fails_at_once(
    fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """output_retries=0: no repair round."""
    fake_bedrock.responder = structured({"name": "Ada"})
    with pytest.raises(OutputValidationError):
        await make_conv(NOVA).send("Ada?", output=Person, output_retries=0)
    assert len(fake_bedrock.requests) == 1


async def test_fan_out_returns_parsed_replies(
    fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """fan_out(..., output=Model) gives every reply its parsed output."""
    fake_bedrock.responder = structured({"name": "Ada", "age": 36})
    replies = await make_conv(NOVA).fan_out(["one", "two", "three"], output=Person)
    assert [r.output for r in replies if not isinstance(r, BaseException)] == [
        Person(name="Ada", age=36)
    ] * 3


async def test_output_types_other_than_models(
    fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """Any TypeAdapter-able type works: list[int] travels wrapped in {"value": ...}."""
    fake_bedrock.responder = structured([3, 1, 2])
    result = await make_conv(NOVA).send("numbers", output=list[int])
    assert result.output == [3, 1, 2]


async def test_the_emulator_answers_structured_requests_by_default(
    fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """With no script, FakeBedrock answers output= requests with a value fitting the schema."""
    native = await make_conv(CLAUDE_45).send("anything", output=Person)
    forced = await make_conv(NOVA).send("anything", output=Person)
    assert native.output == forced.output == Person(name="example", age=1)


async def test_thinking_on_old_claude_with_output_fails_before_io(
    fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """Claude before 4.5 with thinking on cannot take the forced output tool: ValueError at
    stream(), nothing sent; Claude 4.5 uses native output instead and works."""
    from aiostream_chat import InferenceConfig, RequestOptions, Thinking

    options = RequestOptions(thinking=Thinking(budget_tokens=1024))
    inference = InferenceConfig(max_tokens=4096)
    old = make_conv(CLAUDE_4, options=options, inference=inference)
    with pytest.raises(ValueError, match="thinking"):
        old.stream("Ada?", output=Person)
    assert fake_bedrock.requests == [] and not old.busy
    new = make_conv(CLAUDE_45, options=options, inference=inference)
    result = await new.send("Ada?", output=Person)
    assert result.output == Person(name="example", age=1)
    assert "outputConfig" in fake_bedrock.requests[0].body
