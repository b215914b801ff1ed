"""Turns through the real stack: typed events, the text iterator, replies and the history rule
(committed only when a turn completes)."""

from __future__ import annotations

import base64
import json

import pytest

from aiostream_chat import (
    AsyncConversation,
    CitationDelta,
    ContentBlockStart,
    ContentBlockStop,
    ConversationBusyError,
    ConversationState,
    InferenceConfig,
    Message,
    MessageStart,
    MessageStop,
    Metadata,
    ReasoningBlock,
    ReasoningDelta,
    RetryPolicy,
    StreamClosedError,
    TextBlock,
    TextDelta,
    ToolResultBlock,
    ToolSpec,
    ToolUseBlock,
    ToolUseDelta,
    UnknownEvent,
)
from aiostream_chat.testing import FakeBedrock, Fault, ToolUse, raw_events, reply

from .conftest import MakeConv


async def test_text_iterator_yields_chunks_in_order(
    fake_bedrock: FakeBedrock, conv: AsyncConversation
) -> None:
    """`async for` yields each text delta as sent; empty deltas are skipped."""
    fake_bedrock.enqueue(
        reply("Hello there, world", chunks=["Hello", " there,", " world"], empty_deltas=True)
    )
    stream = conv.stream("hi")
    assert stream.status == "pending"
    chunks = [c async for c in stream]
    assert chunks == ["Hello", " there,", " world"]
    assert stream.status == "completed"
    assert stream.text == "Hello there, world"


async def test_events_for_text_reply_in_order(
    fake_bedrock: FakeBedrock, conv: AsyncConversation
) -> None:
    """events() yields every typed event, including the empty delta the text view skips."""
    fake_bedrock.enqueue(
        reply(
            "ab",
            chunks=["a", "b"],
            empty_deltas=True,
            usage={"inputTokens": 3, "outputTokens": 2, "totalTokens": 5},
            latency_ms=77,
            trace={"guardrail": {"x": 1}},
        )
    )
    async with conv.stream("hi") as stream:
        events = [e async for e in stream.events()]
    assert [type(e) for e in events] == [
        MessageStart,
        TextDelta,
        TextDelta,
        TextDelta,
        ContentBlockStop,
        MessageStop,
        Metadata,
    ]
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["", "a", "b"]
    stop = events[-2]
    meta = events[-1]
    assert isinstance(stop, MessageStop) and stop.stop_reason == "end_turn"
    assert isinstance(meta, Metadata)
    assert (meta.usage.total_tokens, meta.server_latency_ms, meta.trace) == (
        5,
        77,
        {"guardrail": {"x": 1}},
    )
    result = await stream.get_reply()
    assert result.metrics.server_latency_ms == 77 and result.trace == {"guardrail": {"x": 1}}


async def test_reasoning_and_tool_use_events_and_reply(
    fake_bedrock: FakeBedrock, conv: AsyncConversation
) -> None:
    """Reasoning (text, signature, redacted) and tool-use fragments assemble into the reply."""
    fake_bedrock.enqueue(
        reply(
            "Let me check.",
            reasoning="think hard",
            signature="sig-123",
            tool_uses=[
                ToolUse("get_weather", {"city": "Paris", "units": "C"}, tool_use_id="t1", chunks=4)
            ],
        )
    )
    stream = conv.stream("weather?")
    events = [e async for e in stream.events()]
    r = await stream.get_reply()
    reasoning = [e for e in events if isinstance(e, ReasoningDelta)]
    assert "".join(e.text for e in reasoning) == "think hard"
    assert [e.signature for e in reasoning if e.signature] == ["sig-123"]
    starts = [e for e in events if isinstance(e, ContentBlockStart)]
    assert starts and starts[0].tool_use is not None and starts[0].tool_use.name == "get_weather"
    fragments = [e.input_fragment for e in events if isinstance(e, ToolUseDelta)]
    assert len(fragments) == 4 and json.loads("".join(fragments)) == {"city": "Paris", "units": "C"}
    assert r.stop_reason == "tool_use"
    assert r.reasoning == "think hard" and r.text == "Let me check."
    assert r.tool_uses == (
        ToolUseBlock(tool_use_id="t1", name="get_weather", input={"city": "Paris", "units": "C"}),
    )
    assert isinstance(r.message.content[0], ReasoningBlock)
    assert r.message.content[0].signature == "sig-123"


async def test_redacted_reasoning_round_trips_to_next_request(
    fake_bedrock: FakeBedrock, conv: AsyncConversation
) -> None:
    """Redacted reasoning bytes are kept in history and sent back base64-encoded."""
    secret = b"\x00\x01opaque\xff"
    fake_bedrock.enqueue(reply("ok", redacted=secret), reply("second"))
    first = await conv.send("one")
    block = first.message.content[0]
    assert isinstance(block, ReasoningBlock) and block.redacted == secret
    await conv.send("two")
    sent = fake_bedrock.requests[1].body["messages"][1]["content"][0]
    assert base64.b64decode(sent["reasoningContent"]["redactedContent"]) == secret


async def test_citations_are_events_and_kept_on_the_text_block(
    fake_bedrock: FakeBedrock, conv: AsyncConversation
) -> None:
    """Citation deltas arrive as CitationDelta and stay attached to their text block."""
    citation = {
        "title": "Doc",
        "location": {"documentChar": {"documentIndex": 0, "start": 1, "end": 5}},
    }
    fake_bedrock.enqueue(reply("cited text", citations=[citation]))
    stream = conv.stream("cite")
    events = [e async for e in stream.events()]
    assert [e.citation for e in events if isinstance(e, CitationDelta)] == [citation]
    block = (await stream.get_reply()).message.content[0]
    assert isinstance(block, TextBlock) and block.citations == (citation,)


async def test_unknown_event_and_delta_kinds_are_forwarded(
    fake_bedrock: FakeBedrock, conv: AsyncConversation
) -> None:
    """An event kind this version does not know arrives as UnknownEvent and is never fatal."""
    fake_bedrock.enqueue(
        raw_events(
            [
                ("messageStart", {"role": "assistant"}),
                ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "hi"}}),
                (
                    "contentBlockDelta",
                    {"contentBlockIndex": 1, "delta": {"image": {"format": "png"}}},
                ),
                ("futureEvent", {"answer": 42}),
                ("contentBlockStop", {"contentBlockIndex": 0}),
                ("messageStop", {"stopReason": "brand_new_reason"}),
                (
                    "metadata",
                    {
                        "usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2},
                        "metrics": {"latencyMs": 5},
                    },
                ),
            ]
        )
    )
    stream = conv.stream("hi")
    events = [e async for e in stream.events()]
    unknown = [e for e in events if isinstance(e, UnknownEvent)]
    assert [u.name for u in unknown] == ["contentBlockDelta", "futureEvent"]
    assert unknown[1].payload == {"answer": 42}
    r = await stream.get_reply()
    assert r.stop_reason == "brand_new_reason" and r.text == "hi"
    assert r.message.content[1].to_bedrock() == {"image": {"format": "png"}}


async def test_history_commits_user_and_assistant_together(
    fake_bedrock: FakeBedrock, conv: AsyncConversation
) -> None:
    """A completed turn appends exactly (user, assistant); the next request carries it."""
    fake_bedrock.enqueue(reply("first answer"), reply("second answer"))
    before = conv.history
    r1 = await conv.send("first question")
    assert before == () and conv.history == (Message.user("first question"), r1.message)
    await conv.send("second question")
    sent = fake_bedrock.requests[1].body["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert sent[1]["content"] == [{"text": "first answer"}]
    assert sent[2]["content"] == [{"text": "second question"}]
    assert len(conv.history) == 4 and len(before) == 0


FAULTS = [
    Fault.http(429),
    Fault.exception("validationException", after=2),
    Fault.exception("throttlingException", after=2),
    Fault.eof(after=2),
    Fault.half_frame(after=1),
    Fault.reset(after=2),
    Fault.corrupt_crc(after=1),
]


@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: f"{f.kind}-{f.code or f.after}")
async def test_failed_turn_leaves_history_untouched(
    fault: Fault, fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """Whatever breaks a turn, history is exactly what it was, and the next turn works."""
    conv = make_conv(
        history=[Message.user("old"), Message.assistant("old answer")], retry=RetryPolicy.none()
    )
    fake_bedrock.enqueue(reply("one two three four", chunks=4, fault=fault), reply("recovered"))
    before = conv.history
    stream = conv.stream("new")
    with pytest.raises(Exception) as info:
        async for _ in stream:
            pass
    assert stream.status == "failed" and stream.error is info.value
    assert conv.history == before and not conv.busy
    assert (await conv.send("again")).text == "recovered"
    assert len(conv.history) == 4


async def test_break_leaves_history_and_frees_conversation(
    fake_bedrock: FakeBedrock, conv: AsyncConversation
) -> None:
    """Leaving `async for` early cancels the turn: no history, connection closed, not busy."""
    fake_bedrock.enqueue(reply("a b c d e f", chunks=6, delay=0.05))
    stream = conv.stream("hi")
    async for _ in stream:
        break
    assert stream.status == "cancelled" and not conv.busy and conv.history == ()
    (gone,) = await fake_bedrock.wait_for_disconnects(1)
    assert not gone.completed
    with pytest.raises(StreamClosedError):
        await stream.get_reply()


async def test_second_turn_while_busy_raises(
    fake_bedrock: FakeBedrock, conv: AsyncConversation
) -> None:
    """Starting a turn while one is in flight raises ConversationBusyError at once."""
    fake_bedrock.enqueue(reply("slow reply here", delay=0.05), reply("after"))
    async with conv.stream("one") as first:
        assert conv.busy
        with pytest.raises(ConversationBusyError):
            async with conv.stream("two"):
                pass
        assert (await first.get_reply()).text == "slow reply here"
    assert not conv.busy
    assert (await conv.send("two")).text == "after"
    assert len(fake_bedrock.requests) == 2


async def test_stream_creation_does_no_io(
    fake_bedrock: FakeBedrock, conv: AsyncConversation
) -> None:
    """stream() returns at once; nothing is sent until the stream is iterated or entered."""
    stream = conv.stream("hi")
    assert fake_bedrock.requests == [] and not conv.busy
    await stream.aclose()
    assert stream.status == "cancelled" and fake_bedrock.requests == []


async def test_fork_is_independent(fake_bedrock: FakeBedrock, conv: AsyncConversation) -> None:
    """A fork starts from a copy of the history; turns on either side stay on that side."""
    fake_bedrock.enqueue(reply("base"), reply("on fork"), reply("on parent"))
    await conv.send("start")
    child = conv.fork()
    await child.send("fork question")
    await conv.send("parent question")
    assert [m.text for m in child.history] == ["start", "base", "fork question", "on fork"]
    assert [m.text for m in conv.history] == ["start", "base", "parent question", "on parent"]
    await child.aclose()  # a fork never closes the shared client
    assert (await conv.send("still works")).text


async def test_fork_turns_run_concurrently(
    fake_bedrock: FakeBedrock, conv: AsyncConversation
) -> None:
    """Forks are separate conversations: two may stream at the same time."""
    fake_bedrock.enqueue(reply("one", delay=0.02), reply("two", delay=0.02))
    a, b = conv.fork(), conv.fork()
    async with a.stream("x") as s1, b.stream("y") as s2:
        r1, r2 = await s1.get_reply(), await s2.get_reply()
    assert {r1.text, r2.text} == {"one", "two"} and conv.history == ()


async def test_snapshot_round_trips_without_secrets(
    fake_bedrock: FakeBedrock, make_conv: MakeConv, session: object
) -> None:
    """snapshot() JSON restores settings and history and holds no credentials or clients."""
    tool = ToolSpec("lookup", "Look a thing up", {"type": "object", "properties": {}})
    conv = make_conv(
        system="Be brief.", inference=InferenceConfig(max_tokens=50, temperature=0.2), tools=[tool]
    )
    fake_bedrock.enqueue(reply("thinking", reasoning="hmm", signature="s", redacted=None))
    await conv.send("hi")
    data = conv.snapshot().model_dump_json()
    assert "AKIDTEST" not in data and "test-secret" not in data and "endpoint" not in data
    state = ConversationState.model_validate_json(data)
    assert state == conv.snapshot()
    restored = AsyncConversation.from_state(
        state, session=session, endpoint_url=fake_bedrock.endpoint_url
    )
    try:
        assert restored.history == conv.history and restored.system == "Be brief."
        fake_bedrock.enqueue(reply("resumed"))
        await restored.send("next")
        body = fake_bedrock.requests[-1].body
        assert body["system"] == [{"text": "Be brief."}]
        assert body["inferenceConfig"] == {"maxTokens": 50, "temperature": 0.2}
        assert body["toolConfig"]["tools"][0]["toolSpec"]["name"] == "lookup"
        assert len(body["messages"]) == 3
    finally:
        await restored.aclose()


async def test_tool_result_turn(fake_bedrock: FakeBedrock, conv: AsyncConversation) -> None:
    """A tool result prompt is sent as a user toolResult block after the toolUse turn."""
    fake_bedrock.enqueue(
        reply("", tool_uses=[ToolUse("calc", {"x": 2}, tool_use_id="tu-9")]), reply("It is 4.")
    )
    first = await conv.send("2+2?")
    (use,) = first.tool_uses
    final = await conv.send([ToolResultBlock(use.tool_use_id, ["4"], "success")])
    assert final.text == "It is 4."
    sent = fake_bedrock.requests[1].body["messages"][2]["content"][0]
    assert sent == {
        "toolResult": {"toolUseId": "tu-9", "content": [{"text": "4"}], "status": "success"}
    }


async def test_model_id_with_reserved_characters(
    fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """An inference-profile ARN reaches Bedrock intact (botocore percent-encodes it)."""
    arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-v1:0"
    fake_bedrock.enqueue(reply("ok"))
    await make_conv(arn).send("hi")
    assert fake_bedrock.requests[0].model_id == arn


async def test_metrics_and_request_id(fake_bedrock: FakeBedrock, conv: AsyncConversation) -> None:
    """Reply metrics count attempts and time; request_id comes from x-amzn-RequestId."""
    fake_bedrock.enqueue(reply("timed", chunks=3, delay=0.01))
    r = await conv.send("hi")
    assert r.metrics.attempts == 1
    assert r.metrics.time_to_first_token is not None
    assert 0 < r.metrics.time_to_first_token <= r.metrics.duration
    assert r.request_id and len(r.request_id) >= 8


async def test_closing_parent_closes_open_fork_streams(
    fake_bedrock: FakeBedrock, conv: AsyncConversation
) -> None:
    """aclose() on the owning conversation closes its forks' open streams before the client."""
    fake_bedrock.enqueue(reply("a b c d e f g h", chunks=8, delay=0.05))
    child = conv.fork()
    stream = child.stream("hi")
    events = stream.events()  # held, so only conv.aclose() can close the stream
    assert isinstance(await anext(events), MessageStart)
    assert stream.status == "streaming" and child.busy
    await conv.aclose()
    assert stream.status == "cancelled" and not child.busy
    assert child.history == ()
    (gone,) = await fake_bedrock.wait_for_disconnects(1)
    assert not gone.completed


async def test_invalid_tool_json_fails_the_turn_cleanly(
    fake_bedrock: FakeBedrock, conv: AsyncConversation
) -> None:
    """A tool call whose streamed input is not JSON fails the turn with ModelError (raw text in
    the message); history is untouched and the conversation is free."""
    from aiostream_chat import ModelError

    fake_bedrock.enqueue(
        raw_events(
            [
                ("messageStart", {"role": "assistant"}),
                (
                    "contentBlockStart",
                    {"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": "t", "name": "f"}}},
                ),
                (
                    "contentBlockDelta",
                    {"contentBlockIndex": 0, "delta": {"toolUse": {"input": '{"a": '}}},
                ),
                ("contentBlockStop", {"contentBlockIndex": 0}),
                ("messageStop", {"stopReason": "tool_use"}),
            ]
        )
    )
    stream = conv.stream("hi", retry=RetryPolicy.none())
    with pytest.raises(ModelError, match='"a": '):
        await stream.get_reply()
    assert stream.status == "failed" and not conv.busy and conv.history == ()


async def test_malformed_event_fails_the_turn_cleanly(
    fake_bedrock: FakeBedrock, conv: AsyncConversation
) -> None:
    """A known event missing a required field is a StreamDecodeError, never a raw KeyError,
    and the conversation is free afterwards."""
    from aiostream_chat import StreamDecodeError

    fake_bedrock.enqueue(
        raw_events(
            [
                ("messageStart", {"role": "assistant"}),
                ("contentBlockDelta", {"delta": {"text": "x"}}),
            ]
        )
    )
    stream = conv.stream("hi", retry=RetryPolicy.none())
    with pytest.raises(StreamDecodeError) as info:
        await stream.get_reply()
    assert isinstance(info.value.__cause__, KeyError)
    assert stream.status == "failed" and not conv.busy and conv.history == ()
