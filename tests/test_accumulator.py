"""The reducer fed plain (event name, payload) lists, and end to end where the stack matters."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from aiostream_chat import (
    AsyncConversation,
    Message,
    Metrics,
    ModelError,
    RawBlock,
    ReasoningBlock,
    TextBlock,
    TextDelta,
    ToolResultBlock,
    ToolUseBlock,
    UnknownEvent,
)
from aiostream_chat._accumulator import Accumulator
from aiostream_chat.testing import FakeBedrock, raw_events


def run(events: list[tuple[str, dict[str, Any]]]) -> tuple[Accumulator, list[Any]]:
    acc = Accumulator()
    return acc, [acc.handle(name, payload) for name, payload in events]


def delta(index: int, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return ("contentBlockDelta", {"contentBlockIndex": index, "delta": body})


def test_text_blocks_and_stop() -> None:
    """Text deltas concatenate per block; stop reason and usage come from their events."""
    acc, events = run(
        [
            ("messageStart", {"role": "assistant"}),
            delta(0, {"text": ""}),
            delta(0, {"text": "Hel"}),
            delta(0, {"text": "lo"}),
            ("contentBlockStop", {"contentBlockIndex": 0}),
            ("messageStop", {"stopReason": "max_tokens"}),
            (
                "metadata",
                {
                    "usage": {
                        "inputTokens": 2,
                        "outputTokens": 3,
                        "totalTokens": 5,
                        "cacheReadInputTokens": 7,
                    },
                    "metrics": {"latencyMs": 9},
                },
            ),
        ]
    )
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["", "Hel", "lo"]
    reply = acc.reply(metrics=Metrics(attempts=2), request_id="r")
    assert reply.text == "Hello" and reply.stop_reason == "max_tokens"
    assert reply.usage.cache_read_input_tokens == 7 and reply.usage.cache_write_input_tokens == 0
    assert reply.metrics.server_latency_ms == 9 and reply.metrics.attempts == 2
    assert reply.message == Message(role="assistant", content=(TextBlock("Hello"),))


def test_content_started_flips_on_first_delta_only() -> None:
    """messageStart and tool starts are not content; the first delta is (first-token clock)."""
    acc = Accumulator()
    acc.handle("messageStart", {"role": "assistant"})
    acc.handle(
        "contentBlockStart",
        {"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": "t", "name": "n"}}},
    )
    assert not acc.content_started
    acc.handle(*delta(0, {"toolUse": {"input": "{"}}))
    assert acc.content_started


def test_tool_input_split_mid_token() -> None:
    """Tool input JSON split anywhere is reassembled at contentBlockStop."""
    acc, _ = run(
        [
            (
                "contentBlockStart",
                {"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "id1", "name": "f"}}},
            ),
            delta(1, {"toolUse": {"input": '{"ci'}}),
            delta(1, {"toolUse": {"input": 'ty": "Pa'}}),
            delta(1, {"toolUse": {"input": 'ris"}'}}),
            ("contentBlockStop", {"contentBlockIndex": 1}),
        ]
    )
    assert acc.message().content == (
        ToolUseBlock(tool_use_id="id1", name="f", input={"city": "Paris"}),
    )


def test_tool_with_no_input_is_empty_object() -> None:
    """A tool call whose input never arrived has input {}."""
    acc, _ = run(
        [
            (
                "contentBlockStart",
                {"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": "i", "name": "now"}}},
            ),
            ("contentBlockStop", {"contentBlockIndex": 0}),
        ]
    )
    assert acc.message().content == (ToolUseBlock(tool_use_id="i", name="now", input={}),)


def test_invalid_tool_json_is_an_error_with_raw_text() -> None:
    """Invalid JSON in a finished tool block raises ModelError quoting the raw input."""
    acc = Accumulator()
    acc.handle(
        "contentBlockStart",
        {"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": "i", "name": "f"}}},
    )
    acc.handle(*delta(0, {"toolUse": {"input": '{"a": '}}))
    with pytest.raises(ModelError, match=r'\{"a": '):
        acc.handle("contentBlockStop", {"contentBlockIndex": 0})


def test_reasoning_signature_and_redacted() -> None:
    """Reasoning text, signature and base64 redacted bytes accumulate into one block."""
    acc, events = run(
        [
            delta(0, {"reasoningContent": {"text": "step 1. "}}),
            delta(0, {"reasoningContent": {"text": "step 2."}}),
            delta(0, {"reasoningContent": {"signature": "SIG"}}),
            delta(
                1,
                {"reasoningContent": {"redactedContent": base64.b64encode(b"\x00secret").decode()}},
            ),
            delta(2, {"text": "answer"}),
        ]
    )
    assert acc.message().content == (
        ReasoningBlock(text="step 1. step 2.", signature="SIG"),
        ReasoningBlock(redacted=b"\x00secret"),
        TextBlock("answer"),
    )
    assert events[3].redacted == b"\x00secret"
    assert acc.reply(metrics=Metrics(), request_id=None).reasoning == "step 1. step 2."


def test_unknown_block_kept_verbatim() -> None:
    """A block kind this version does not know becomes a RawBlock holding start and deltas."""
    acc, events = run(
        [
            (
                "contentBlockStart",
                {"contentBlockIndex": 0, "start": {"toolResult": {"toolUseId": "t", "type": "x"}}},
            ),
            delta(0, {"toolResult": [{"json": {"v": 1}}]}),
            delta(0, {"toolResult": [{"text": "more"}]}),
            ("contentBlockStop", {"contentBlockIndex": 0}),
        ]
    )
    assert isinstance(events[1], UnknownEvent)
    assert acc.message().content == (
        RawBlock(
            data={
                "toolResult": {
                    "toolUseId": "t",
                    "type": "x",
                    "content": [{"json": {"v": 1}}, {"text": "more"}],
                }
            }
        ),
    )


def test_blank_text_block_dropped_from_message() -> None:
    """A text block with only empty deltas is not kept (Bedrock rejects blank text blocks)."""
    acc, _ = run([delta(0, {"text": ""}), delta(1, {"toolUse": {"input": "{}"}})])
    assert all(not isinstance(b, TextBlock) for b in acc.message().content)


def test_message_bedrock_round_trip() -> None:
    """Message.to_bedrock()/from_bedrock() round-trip every block kind."""
    message = Message(
        role="assistant",
        content=(
            ReasoningBlock(text="r", signature="s"),
            ReasoningBlock(redacted=b"\x01"),
            TextBlock("t"),
            ToolUseBlock(tool_use_id="i", name="n", input={"a": [1]}),
            RawBlock(data={"searchResult": {"source": "s", "content": [{"text": "AA=="}]}}),
        ),
    )
    assert Message.from_bedrock(message.to_bedrock()) == message
    assert Message.from_bedrock(message.to_bedrock()).model_dump_json() == message.model_dump_json()


def test_unknown_delta_inside_text_block_keeps_text() -> None:
    """An unknown delta between text deltas is forwarded, and the block stays a TextBlock."""
    acc, events = run(
        [
            delta(0, {"text": "Hel"}),
            delta(0, {"futureDelta": {"x": 1}}),
            delta(0, {"text": "lo"}),
            ("contentBlockStop", {"contentBlockIndex": 0}),
        ]
    )
    assert [type(e).__name__ for e in events[:3]] == ["TextDelta", "UnknownEvent", "TextDelta"]
    assert events[1].payload["delta"] == {"futureDelta": {"x": 1}}
    assert acc.message().content == (TextBlock("Hello"),)


def test_startless_block_of_unknown_deltas_is_raw() -> None:
    """A block made only of unknown deltas (no start event) is kept whole as a RawBlock."""
    acc, _ = run([delta(0, {"futureBlock": {"a": "x"}}), delta(0, {"futureBlock": {"a": "y"}})])
    assert acc.message().content == (RawBlock(data={"futureBlock": {"a": "xy"}}),)


UNKNOWN = {"futureDelta": {"note": "a delta kind this version does not know"}}


def _unknown_inside_blocks() -> list[tuple[str, dict[str, Any]]]:
    start = {"toolUse": {"toolUseId": "tool-1", "name": "weather"}}
    return [
        ("messageStart", {"role": "assistant"}),
        delta(0, {"reasoningContent": {"text": "Think "}}),
        delta(0, UNKNOWN),
        delta(0, {"reasoningContent": {"text": "twice."}}),
        delta(0, {"reasoningContent": {"signature": "SIG"}}),
        ("contentBlockStop", {"contentBlockIndex": 0}),
        delta(1, {"text": "Let me "}),
        delta(1, UNKNOWN),
        delta(1, {"text": "check."}),
        ("contentBlockStop", {"contentBlockIndex": 1}),
        ("contentBlockStart", {"contentBlockIndex": 2, "start": start}),
        delta(2, {"toolUse": {"input": '{"city": '}}),
        delta(2, UNKNOWN),
        delta(2, {"toolUse": {"input": '"Paris"}'}}),
        ("contentBlockStop", {"contentBlockIndex": 2}),
        ("messageStop", {"stopReason": "tool_use"}),
        ("metadata", {"usage": {"inputTokens": 3, "outputTokens": 4, "totalTokens": 7}}),
    ]


async def test_unknown_deltas_inside_blocks_lose_nothing_end_to_end(
    fake_bedrock: FakeBedrock, conv: AsyncConversation
) -> None:
    """Unknown deltas inside reasoning, text and tool-use blocks arrive as UnknownEvents, while
    the typed deltas around them still build the reply and history, and the next request sends
    the assistant message back to Bedrock as well-formed blocks."""
    fake_bedrock.enqueue(raw_events(_unknown_inside_blocks()))
    async with conv.stream("Weather in Paris?") as stream:
        events = [event async for event in stream.events()]
        reply = await stream.get_reply()
    unknown = [e for e in events if isinstance(e, UnknownEvent)]
    assert [e.payload["delta"] for e in unknown] == [UNKNOWN] * 3
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["Let me ", "check."]
    tool = ToolUseBlock(tool_use_id="tool-1", name="weather", input={"city": "Paris"})
    assert reply.text == "Let me check." and reply.reasoning == "Think twice."
    assert reply.tool_uses == (tool,)
    assert conv.history[-1] == reply.message
    assert reply.message.content == (
        ReasoningBlock(text="Think twice.", signature="SIG"),
        TextBlock("Let me check."),
        tool,
    )
    await conv.send([ToolResultBlock(tool_use_id="tool-1", content="18 C, sunny")])
    sent = fake_bedrock.requests[-1].body["messages"][1]
    assert sent == {
        "role": "assistant",
        "content": [
            {"reasoningContent": {"reasoningText": {"text": "Think twice.", "signature": "SIG"}}},
            {"text": "Let me check."},
            {"toolUse": {"toolUseId": "tool-1", "name": "weather", "input": {"city": "Paris"}}},
        ],
    }
