"""Every real Bedrock recording replays through FakeBedrock + aioboto3 + our decoder to its
`expected` result, and lands in history with every block the model sent."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from aiostream_chat import (
    InvalidRequestError,
    RawBlock,
    ReasoningBlock,
    TextBlock,
    ToolUseBlock,
)
from aiostream_chat.testing import FakeBedrock, load_recording, recordings_dir, replay

from .conftest import MakeConv

STREAMED = sorted(
    p.stem for p in recordings_dir().glob("*.json") if json.loads(p.read_text())["status"] == 200
)


def _model_of(recording: dict[str, Any]) -> str:
    from urllib.parse import unquote

    return unquote(recording["uri"].split("/model/")[1].split("/")[0])


def test_recordings_are_present() -> None:
    """The shared recordings are found, so the parametrised tests below cannot silently vanish."""
    assert {"nova_text", "nova_tool_use", "claude_reasoning", "nova_code_execution"} <= set(
        STREAMED
    )


@pytest.mark.parametrize("name", STREAMED)
async def test_recording_replays_to_expected(
    name: str, fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """Text, stop reason, usage and each content block equal the recording's `expected`."""
    recording = load_recording(name)
    expected = recording["expected"]
    fake_bedrock.enqueue(replay(recording))
    conv = make_conv(_model_of(recording))
    stream = conv.stream("replayed prompt")
    chunks = [chunk async for chunk in stream]
    reply = await stream.get_reply()

    assert "".join(chunks) == expected["text"] == reply.text
    assert reply.stop_reason == expected["stop_reason"]
    usage = expected["usage"]
    assert (reply.usage.input_tokens, reply.usage.output_tokens, reply.usage.total_tokens) == (
        usage["inputTokens"],
        usage["outputTokens"],
        usage["totalTokens"],
    )
    assert len(reply.message.content) == len(expected["blocks"])
    for block, want in zip(reply.message.content, expected["blocks"], strict=True):
        match want["kind"]:
            case "text":
                assert isinstance(block, TextBlock) and block.text == want["text"]
            case "reasoningContent":
                assert isinstance(block, ReasoningBlock)
                assert block.text == want["text"]
                assert block.signature == want.get("signature")
                if "redacted" in want:
                    assert block.redacted == base64.b64decode(want["redacted"])
            case "toolUse":
                assert isinstance(block, ToolUseBlock)
                assert (block.name, block.tool_use_id) == (want["name"], want["id"])
                assert block.input == json.loads(want["input"])
            case kind:
                # Kinds the pinned botocore does not know survive verbatim (nova_code_execution).
                assert isinstance(block, RawBlock)
                assert block.data[kind] == {
                    **want["raw"][kind],
                    "content": [item for delta in want["deltas"] for item in delta[kind]],
                }
    assert reply.tool_uses == tuple(b for b in reply.message.content if isinstance(b, ToolUseBlock))
    assert conv.history[-1] == reply.message
    assert conv.history[-2].text == "replayed prompt"


async def test_reasoning_recording_exposes_reasoning_text(
    fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """Reply.reasoning carries the reasoning text, kept apart from the answer text."""
    recording = load_recording("claude_reasoning")
    fake_bedrock.enqueue(replay(recording))
    reply = await make_conv(_model_of(recording)).send("Hello")
    assert reply.reasoning == recording["expected"]["blocks"][0]["text"]
    assert reply.reasoning not in reply.text


async def test_unknown_block_is_sent_back_on_next_turn(
    fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """The server-tool result botocore 1.40 does not know goes back to Bedrock on the next turn."""
    recording = load_recording("nova_code_execution")
    fake_bedrock.enqueue(replay(recording))
    conv = make_conv(_model_of(recording))
    await conv.send("What is 1234 * 5678?")
    await conv.send("Thanks")
    sent = fake_bedrock.requests[1].body["messages"][1]["content"]
    assert [next(iter(block)) for block in sent] == ["toolUse", "toolResult", "toolUse"]
    assert sent[1]["toolResult"]["content"] == [
        {"json": {"stdOut": "7006652", "stdErr": "", "exitCode": 0, "isError": False}}
    ]


async def test_error_recording_raises_invalid_request(
    fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """The recorded 400 (unknown model) becomes InvalidRequestError with Bedrock's message."""
    recording = load_recording("error_400_unknown_model")
    fake_bedrock.enqueue(replay(recording))
    conv = make_conv(_model_of(recording))
    with pytest.raises(InvalidRequestError) as info:
        await conv.send("hello")
    assert info.value.message == recording["expected"]["error_body"]["message"]
    assert info.value.status_code == 400
    assert conv.history == ()
