"""Bad input is rejected with ValueError/TypeError and a clear message, before any network I/O."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from aiostream_chat import (
    AsyncConversation,
    InferenceConfig,
    Message,
    RawBlock,
    ReasoningBlock,
    RetryPolicy,
    TextBlock,
    Timeouts,
    ToolResultBlock,
    ToolSpec,
    ToolUseBlock,
)
from aiostream_chat.testing import FakeBedrock

from .conftest import MODEL, MakeConv

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
        ({"max_connections": 2.5}, TypeError, "max_connections must be an int, not float"),
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


class _Opaque:
    """An object that JSON cannot hold."""


UNSERIALISABLE: list[Any] = [
    [RawBlock(data={"document": {"tags": {"a", "b"}}})],
    [RawBlock(data={"note": {"when": datetime.datetime(2026, 1, 1)}})],
    [RawBlock(data={"thing": _Opaque()})],
    [TextBlock("see the tool"), RawBlock(data={"k": {1.5: "non-str key"}})],
]


@pytest.mark.parametrize("prompt", UNSERIALISABLE)
async def test_unserialisable_prompt_is_type_error_before_claim(
    prompt: Any, fake_bedrock: FakeBedrock, conv: AsyncConversation
) -> None:
    """A prompt holding a set, a datetime or an object raises TypeError at stream(); the
    conversation is never claimed and nothing reaches Bedrock."""
    with pytest.raises(TypeError, match="JSON"):
        conv.stream(prompt)
    assert not conv.busy and fake_bedrock.requests == []
    assert (await conv.send("still usable")).text


async def test_unserialisable_tool_result_and_history(
    fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """Tool results, tool specs and history are checked too: a set in a tool result or a tool's
    input schema is refused at stream(), a date in a history tool input at construction."""
    conv = make_conv(history=TOOL_HISTORY)
    bad_result = ToolResultBlock(tool_use_id="t1", content=[{"json": {"ids": {1, 2}}}])
    with pytest.raises(TypeError, match="set"):
        conv.stream([bad_result])
    assert not conv.busy
    bad_tool = ToolSpec("pick", "d", {"enum": {1, 2}})
    with pytest.raises(TypeError, match="input schema of tool 'pick' holds a set"):
        conv.stream("hi", tools=[bad_tool])
    with pytest.raises(TypeError, match="input schema of tool 'pick'"):
        AsyncConversation(MODEL, tools=[bad_tool])
    bad_use = ToolUseBlock(tool_use_id="t1", name="f", input={"at": datetime.date(2026, 1, 1)})
    with pytest.raises(TypeError, match="history message 1 holds a date"):
        AsyncConversation(
            MODEL, history=[Message.user("q"), Message(role="assistant", content=(bad_use,))]
        )
    assert fake_bedrock.requests == []


TOOL_USE = ToolUseBlock(tool_use_id="t1", name="f", input={})
TOOL_HISTORY = [Message.user("call f"), Message(role="assistant", content=(TOOL_USE,))]
BAD_HISTORIES: list[tuple[list[Message], str]] = [
    ([Message.assistant("I speak first")], "start with a user message"),
    ([Message.user("a"), Message.user("b")], "alternate"),
    ([Message.user("a"), Message.assistant("b"), Message.assistant("c")], "alternate"),
    (
        [Message.user("a"), Message.assistant("b"), Message(role="user", content=(TOOL_USE,))],
        "ToolUseBlock",
    ),
    (
        [
            Message.user("a"),
            Message.assistant("b"),
            Message(role="user", content=(ToolResultBlock(tool_use_id="t9", content="x"),)),
        ],
        "matches no tool use",
    ),
]


@pytest.mark.parametrize(("history", "words"), BAD_HISTORIES)
def test_bad_history_shape_is_value_error(history: list[Message], words: str) -> None:
    """A history Bedrock would reject (not alternating, assistant first, a user tool use, a
    tool result without its tool use) raises ValueError at construction."""
    with pytest.raises(ValueError, match=words):
        AsyncConversation(MODEL, history=history)


BAD_NEXT_PROMPTS: list[tuple[list[Message], Any, str]] = [
    ([], [ToolResultBlock(tool_use_id="t1", content="x")], "matches no tool use"),
    (TOOL_HISTORY, [ToolResultBlock(tool_use_id="other", content="x")], "matches no tool use"),
    ([Message.user("dangling")], "hi", "alternate"),
    ([], [TOOL_USE], "ToolUseBlock"),
    ([], Message(role="user", content=(ReasoningBlock(text="r", signature="s"),)), "Reasoning"),
]


@pytest.mark.parametrize(("history", "prompt", "words"), BAD_NEXT_PROMPTS)
async def test_prompt_checked_against_history(
    history: list[Message],
    prompt: Any,
    words: str,
    fake_bedrock: FakeBedrock,
    make_conv: MakeConv,
) -> None:
    """A prompt that cannot follow the history raises ValueError at stream(), before any I/O."""
    conv = make_conv(history=history)
    with pytest.raises(ValueError, match=words):
        conv.stream(prompt)
    assert not conv.busy and fake_bedrock.requests == []


async def test_matching_tool_result_is_accepted(
    fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """A tool result answering the previous assistant's tool use goes through."""
    conv = make_conv(history=TOOL_HISTORY)
    await conv.send([ToolResultBlock(tool_use_id="t1", content="done")])
    assert (
        fake_bedrock.requests[-1].body["messages"][-1]["content"][0]["toolResult"]["toolUseId"]
        == "t1"
    )


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"session": "default"}, "session must be Session or None, not str"),
        ({"session": object()}, "not object"),
        (
            {"client": "bedrock-runtime"},
            "client must be an open aiobotocore bedrock-runtime client",
        ),
        ({"client": object()}, "not object"),
        ({"history": Message.user("hi")}, "history must be an iterable of Message, not Message"),
        ({"history": 5}, "not int"),
        ({"tools": ToolSpec("n", "d", {})}, "tools must be a sequence of ToolSpec, not ToolSpec"),
    ],
)
def test_wrong_types_name_what_was_passed(kwargs: dict[str, Any], words: str) -> None:
    """session=, client=, history= and tools= of the wrong type raise TypeError at
    construction, naming the type that was passed."""
    with pytest.raises(TypeError, match=words):
        AsyncConversation(MODEL, **kwargs)


@pytest.mark.parametrize(
    ("build", "error", "words"),
    [
        (lambda: Timeouts(idle=0), ValueError, "Timeouts.idle must be greater than 0, not 0"),
        (lambda: Timeouts(total=-1.5), ValueError, "Timeouts.total must be greater than 0"),
        (lambda: Timeouts(connect="5"), TypeError, "Timeouts.connect must be a valid number"),
        (lambda: Timeouts(first_token=True), TypeError, "Timeouts.first_token must be"),
        (lambda: RetryPolicy(max_attempts="3"), TypeError, "RetryPolicy.max_attempts must be"),
        (lambda: RetryPolicy(max_attempts=0), ValueError, "greater than or equal to 1"),
        (lambda: RetryPolicy(jitter="yes"), TypeError, "RetryPolicy.jitter must be"),
        (lambda: InferenceConfig(top_p=1.5), ValueError, "InferenceConfig.top_p must be"),
        (lambda: InferenceConfig(max_tokens=0), ValueError, "InferenceConfig.max_tokens must"),
    ],
)
def test_config_errors_are_one_plain_sentence(
    build: Any, error: type[Exception], words: str
) -> None:
    """Bad config values raise a plain ValueError/TypeError (not pydantic's ValidationError)
    with one sentence naming the field and the value, and no error URL."""
    with pytest.raises(error) as info:
        build()
    assert type(info.value) is error
    message = str(info.value)
    assert words in message
    assert "\n" not in message and "http" not in message and "pydantic" not in message


async def test_per_turn_connect_timeout_is_refused(
    fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """connect is a client setting: a per-turn Timeouts that sets a different connect raises
    ValueError saying so; one that leaves connect alone (or repeats it) is fine."""
    conv = make_conv(timeouts=Timeouts(connect=3))
    with pytest.raises(ValueError, match="connect is a client setting"):
        conv.stream("hi", timeouts=Timeouts(connect=1))
    assert not conv.busy and fake_bedrock.requests == []
    assert (await conv.send("hi", timeouts=Timeouts(idle=5))).text
    assert (await conv.send("hi", timeouts=Timeouts(connect=3, idle=5))).text
