"""Bad input is rejected with ValueError/TypeError and a clear message, before any network I/O."""

from __future__ import annotations

from typing import Any

import pytest

from aiostream_chat import (
    AsyncConversation,
    InferenceConfig,
    Message,
    RetryPolicy,
    TextBlock,
    Timeouts,
    ToolSpec,
)
from aiostream_chat.testing import FakeBedrock

from .conftest import MakeConv

BAD_PROMPTS: list[tuple[Any, type[Exception], str]] = [
    ("", ValueError, "empty"),
    ("   \n\t", ValueError, "empty"),
    (Message.assistant("I am the model"), ValueError, "role 'user'"),
    (Message(role="user", content=()), ValueError, "no content"),
    ([], ValueError, "no content"),
    ([TextBlock("  ")], ValueError, "empty text block"),
    (["plain str in a list"], TypeError, "content blocks"),
    (None, TypeError, "prompt must be"),
    (42, TypeError, "prompt must be"),
    (b"bytes", TypeError, "prompt must be"),
    ({"role": "user"}, TypeError, "prompt must be"),
]


@pytest.mark.parametrize(("prompt", "error", "words"), BAD_PROMPTS)
async def test_bad_prompt_rejected_before_io(
    prompt: Any,
    error: type[Exception],
    words: str,
    fake_bedrock: FakeBedrock,
    conv: AsyncConversation,
) -> None:
    """stream(), send() and fan_out() refuse the prompt at the call; nothing reaches Bedrock."""
    with pytest.raises(error, match=words):
        conv.stream(prompt)
    with pytest.raises(error, match=words):
        await conv.send(prompt)
    with pytest.raises(error, match=words):
        await conv.fan_out(["fine", prompt])
    assert fake_bedrock.requests == [] and not conv.busy


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"model_id": ""}, ValueError, "model_id is empty"),
        ({"model_id": "  "}, ValueError, "model_id is empty"),
        ({"model_id": None}, TypeError, "model_id must be a str"),
        ({"max_connections": 0}, ValueError, "max_connections must be at least 1"),
        ({"max_connections": 2.5}, TypeError, "max_connections must be an int"),
        ({"retry": {"max_attempts": 2}}, TypeError, "retry must be RetryPolicy"),
        ({"timeouts": 5}, TypeError, "timeouts must be Timeouts"),
        ({"inference": {"max_tokens": 5}}, TypeError, "inference must be InferenceConfig"),
        ({"history": ["hello"]}, TypeError, "history must hold Message"),
        ({"history": "hello"}, TypeError, "history must be an iterable"),
        ({"tools": [{"name": "x"}]}, TypeError, "tools must hold ToolSpec"),
        ({"system": 7}, TypeError, "system must be str"),
    ],
)
def test_bad_conversation_settings(
    kwargs: dict[str, Any], error: type[Exception], words: str
) -> None:
    """The constructor names the setting that is wrong."""
    kwargs = {"model_id": "m", **kwargs}
    with pytest.raises(error, match=words):
        AsyncConversation(kwargs.pop("model_id"), **kwargs)


@pytest.mark.parametrize(
    "build",
    [
        lambda: Timeouts(idle=0),
        lambda: Timeouts(first_token=-1),
        lambda: Timeouts(total=0.0),
        lambda: Timeouts(connect=-0.5),
        lambda: RetryPolicy(max_attempts=0),
        lambda: RetryPolicy(initial_delay=-1),
        lambda: InferenceConfig(max_tokens=0),
        lambda: InferenceConfig(top_p=1.5),
        lambda: ToolSpec("", "d", {}),
    ],
)
def test_bad_config_values_raise_value_error(build: Any) -> None:
    """Zero or negative timeouts, max_attempts < 1 and out-of-range sampling values are refused."""
    with pytest.raises(ValueError):
        build()


async def test_bad_overrides_rejected(fake_bedrock: FakeBedrock, conv: AsyncConversation) -> None:
    """Per-turn overrides are type-checked at stream()."""
    with pytest.raises(TypeError, match="timeouts"):
        conv.stream("hi", timeouts=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="tools"):
        conv.stream("hi", tools=["x"])  # type: ignore[list-item]
    assert fake_bedrock.requests == []


async def test_fan_out_bad_concurrency(conv: AsyncConversation) -> None:
    """concurrency must be a positive int."""
    with pytest.raises(ValueError, match="concurrency"):
        await conv.fan_out(["a"], concurrency=0)
    with pytest.raises(TypeError, match="prompts"):
        await conv.fan_out("just one string")


def test_values_are_frozen_and_positional() -> None:
    """Values are immutable; simple ones accept positional fields as written in API.md."""
    block = TextBlock("hi")
    with pytest.raises(ValueError):
        block.text = "changed"  # type: ignore[misc]
    assert ToolSpec("n", "d", {"type": "object"}).name == "n"
    with pytest.raises(TypeError):
        TextBlock("a", text="b")


async def test_history_snapshot_is_not_mutated(
    fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """A history tuple handed out earlier never changes when the conversation moves on."""
    conv = make_conv()
    before = conv.history
    await conv.send("hello")
    assert before == () and len(conv.history) == 2


async def test_missing_region_is_our_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """No region anywhere: entering the conversation raises ValueError naming region_name=."""
    import aioboto3

    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    session = aioboto3.Session(aws_access_key_id="a", aws_secret_access_key="b")
    conv = AsyncConversation("m", session=session)
    with pytest.raises(ValueError, match=r"region_name=.*AWS_REGION"):
        async with conv:
            pass
    await conv.aclose()
