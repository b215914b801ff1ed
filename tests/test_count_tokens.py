"""count_tokens(): Bedrock's CountTokens for the history (plus a prompt), system and tools."""

from __future__ import annotations

from typing import Any

import pytest

from aiostream_chat import (
    ImageBlock,
    InvalidRequestError,
    RequestOptions,
    TextBlock,
    Thinking,
    ToolSpec,
)
from aiostream_chat.testing import FakeBedrock
from aiostream_chat.testing._validate_request import count_tokens as emulator_count
from tests.test_blocks import PNG

CLAUDE = "us.anthropic.claude-sonnet-4-20250514-v1:0"
TOOL = ToolSpec("lookup", "Look a word up in the dictionary.", {"type": "object"})


async def test_count_tokens_sends_the_converse_input_and_returns_the_count(
    fake_bedrock: FakeBedrock, make_conv: Any
) -> None:
    """POST /model/{id}/count-tokens with input.converse = messages, system, toolConfig;
    the emulator's inputTokens comes back as an int and history does not change."""
    conv = make_conv(CLAUDE, system="Be brief.", tools=[TOOL])
    await conv.send("Hello there")
    history = conv.history
    count = await conv.count_tokens("And a follow-up question?")
    request = fake_bedrock.requests[-1]
    assert request.operation == "count-tokens"
    assert request.path.endswith("/count-tokens")
    converse = request.body["input"]["converse"]
    assert [m["role"] for m in converse["messages"]] == ["user", "assistant", "user"]
    assert converse["messages"][-1]["content"] == [{"text": "And a follow-up question?"}]
    assert converse["system"] == [{"text": "Be brief."}]
    assert converse["toolConfig"]["tools"][0]["toolSpec"]["name"] == "lookup"
    assert isinstance(count, int) and count == emulator_count(request.body)
    assert conv.history == history and not conv.busy


async def test_count_tokens_without_prompt_counts_the_history(
    fake_bedrock: FakeBedrock, make_conv: Any
) -> None:
    """count_tokens() with no prompt counts the history alone; a longer prompt counts more."""
    conv = make_conv()
    await conv.send("Hello there")
    alone = await conv.count_tokens()
    assert len(fake_bedrock.requests[-1].body["input"]["converse"]["messages"]) == 2
    longer = await conv.count_tokens("a much longer prompt " * 20)
    assert longer > alone > 0


async def test_count_tokens_carries_media_and_thinking_fields(
    fake_bedrock: FakeBedrock, make_conv: Any
) -> None:
    """Images go as base64 and the options' additionalModelRequestFields are counted too."""
    conv = make_conv(CLAUDE, options=RequestOptions(thinking=Thinking(budget_tokens=2048)))
    await conv.count_tokens([TextBlock("What is this?"), ImageBlock("png", PNG)])
    converse = fake_bedrock.requests[-1].body["input"]["converse"]
    assert converse["messages"][0]["content"][1]["image"]["format"] == "png"
    assert converse["additionalModelRequestFields"]["thinking"]["budget_tokens"] == 2048


async def test_count_tokens_bad_prompt_fails_before_io(
    fake_bedrock: FakeBedrock, make_conv: Any
) -> None:
    """An empty prompt is a ValueError at the call; nothing is sent."""
    conv = make_conv()
    with pytest.raises(ValueError, match="empty"):
        await conv.count_tokens("   ")
    assert fake_bedrock.requests == []


async def test_count_tokens_errors_map_to_the_error_tree(
    fake_bedrock: FakeBedrock, make_conv: Any
) -> None:
    """A 400 ValidationException from CountTokens is raised as InvalidRequestError."""
    conv = make_conv(system="x", options=RequestOptions(extra_body={"system": [{"text": ""}]}))
    with pytest.raises(InvalidRequestError, match="system") as caught:
        await conv.count_tokens("hi")
    assert caught.value.status_code == 400 and not conv.busy


async def test_count_tokens_that_gets_no_answer_times_out() -> None:
    """The client has no read timeout, so count_tokens bounds its wait itself: a call that
    never answers raises FirstTokenTimeoutError (a TimeoutError) after the given time."""
    import asyncio
    from types import SimpleNamespace

    from aiostream_chat import FirstTokenTimeoutError
    from aiostream_chat._count_tokens import count_tokens

    async def never(**_: Any) -> dict[str, Any]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    events = SimpleNamespace(register=lambda *a, **k: None)
    client = SimpleNamespace(meta=SimpleNamespace(events=events), count_tokens=never)
    with pytest.raises(FirstTokenTimeoutError, match="CountTokens") as caught:
        await count_tokens(client, "m", {"messages": []}, timeout=0.05)
    assert isinstance(caught.value, TimeoutError)
