"""The tool loop through the emulator: one turn across tool rounds, committed atomically."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from aiostream_chat import (
    ChatError,
    Message,
    RetryPolicy,
    StreamEvent,
    TextDelta,
    ToolCallFinished,
    ToolCallStarted,
    ToolLoopError,
    ToolSpec,
    tool,
)
from aiostream_chat.testing import FakeBedrock, ToolUse, agent, tool_results

from .conftest import MakeConv
from .test_fault_matrix import ATTEMPTS, CASES, HISTORY, Case

calls: list[dict[str, Any]] = []


@tool
def weather(city: str) -> dict[str, Any]:
    """The current weather in a city."""
    calls.append({"city": city})
    return {"city": city, "celsius": 18 if city == "Paris" else 3}


@tool
async def local_time(city: str) -> str:
    """The local time in a city."""
    return f"12:00 in {city}"


@pytest.fixture(autouse=True)
def _clear_calls() -> None:
    calls.clear()


def texts(events: list[StreamEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


async def test_multi_round_turn_streams_every_round_and_commits_all_messages(
    fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """Two tool rounds then an answer: one async for, one atomic commit of six messages."""
    fake_bedrock.responder = agent(
        [ToolUse("weather", {"city": "Paris"})],
        [ToolUse("weather", {"city": "Oslo"}), ToolUse("local_time", {"city": "Oslo"})],
        say="Checking. ",
    )
    conv = make_conv(tools=[weather, local_time])
    stream = conv.stream("Paris or Oslo?")
    events = [event async for event in stream.events()]
    result = await stream.get_reply()

    assert texts(events).startswith("Checking. Checking. Based on the tools: ")
    assert stream.text == texts(events)
    order = [(type(e).__name__, e.name) for e in events if isinstance(e, ToolCallStarted)]
    assert order == [
        ("ToolCallStarted", "weather"),
        ("ToolCallStarted", "weather"),
        ("ToolCallStarted", "local_time"),
    ]
    finished = [e for e in events if isinstance(e, ToolCallFinished)]
    assert [e.result.status for e in finished] == ["success"] * 3
    assert calls == [{"city": "Paris"}, {"city": "Oslo"}]

    # the model received each round's results in the next request
    assert len(fake_bedrock.requests) == 3
    (first,) = tool_results(fake_bedrock.requests[1])
    assert first["content"] == [{"json": {"city": "Paris", "celsius": 18}}]
    second = tool_results(fake_bedrock.requests[2])
    assert [r["content"] for r in second] == [
        [{"json": {"city": "Oslo", "celsius": 3}}],
        [{"text": "12:00 in Oslo"}],
    ]
    assert "12:00 in Oslo" in result.text

    assert len(result.messages) == 6 and conv.history == result.messages
    assert [m.role for m in conv.history] == ["user", "assistant"] * 3
    assert result.message == conv.history[-1] and result.stop_reason == "end_turn"
    assert result.metrics.attempts == 3
    assert result.usage.input_tokens == 60  # 20 per round, summed


async def test_plain_functions_are_wrapped_and_run(
    fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """tools= may hold a plain function: it becomes a Tool and the loop runs it."""

    def shout(word: str) -> str:
        """Upper-case a word."""
        return word.upper()

    fake_bedrock.responder = agent([ToolUse("shout", {"word": "hey"})])
    result = await make_conv().send("Shout hey", tools=[shout])
    assert result.text == "Based on the tools: HEY."
    assert len(result.messages) == 4


async def test_parallel_calls_run_concurrently(
    fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """Two calls of one round wait for each other: they only finish if they overlap."""
    arrived: list[str] = []
    both = asyncio.Event()

    @tool
    async def meet(name: str) -> str:
        """Waits for the other caller."""
        arrived.append(name)
        if len(arrived) == 2:
            both.set()
        await both.wait()
        return f"met {name}"

    fake_bedrock.responder = agent([ToolUse("meet", {"name": "a"}), ToolUse("meet", {"name": "b"})])
    result = await make_conv(tools=[meet]).send("meet", tool_timeout=20)
    assert result.text == "Based on the tools: met a; met b."


async def test_a_failing_tool_reports_the_error_to_the_model(
    fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """An exception becomes an error toolResult; the turn still completes."""

    @tool
    def divide(a: int, b: int) -> float:
        """Divide a by b."""
        return a / b

    fake_bedrock.responder = agent([ToolUse("divide", {"a": 1, "b": 0})])
    conv = make_conv(tools=[divide])
    result = await conv.send("1/0?")
    (sent,) = tool_results(fake_bedrock.requests[1])
    assert sent["status"] == "error"
    assert sent["content"] == [
        {"text": "Tool 'divide' failed: ZeroDivisionError: division by zero"}
    ]
    assert "ZeroDivisionError" in result.text and len(conv.history) == 4


async def test_invalid_arguments_reach_the_model_as_an_error(
    fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """Arguments are validated before the call: the function is never called with bad ones."""
    fake_bedrock.responder = agent([ToolUse("weather", {"town": "Paris"})])
    await make_conv(tools=[weather]).send("weather?")
    (sent,) = tool_results(fake_bedrock.requests[1])
    assert sent["status"] == "error" and "city: Field required" in sent["content"][0]["text"]
    assert calls == []


async def test_a_timed_out_tool_is_stopped_and_reported(
    fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """tool_timeout stops a hanging call; the model is told, the turn completes."""
    stopped = asyncio.Event()

    @tool
    async def hang() -> str:
        """Never returns."""
        try:
            await asyncio.Event().wait()
        finally:
            stopped.set()
        return "never"

    fake_bedrock.responder = agent([ToolUse("hang", {})])
    result = await make_conv(tools=[hang]).send("go", tool_timeout=0.1)
    (sent,) = tool_results(fake_bedrock.requests[1])
    assert sent["status"] == "error"
    assert sent["content"] == [{"text": "Tool 'hang' did not finish within 0.1 s and was stopped."}]
    assert stopped.is_set() and result.stop_reason == "end_turn"


@pytest.mark.parametrize("how", ["aclose", "cancel"])
async def test_closing_during_a_tool_call_cancels_it_and_keeps_history(
    fake_bedrock: FakeBedrock, make_conv: MakeConv, how: str
) -> None:
    """aclose() or cancelling the consumer mid-tool cancels the call; history is unchanged."""
    running = asyncio.Event()
    cancelled = asyncio.Event()

    @tool
    async def slow() -> str:
        """Takes forever."""
        running.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "never"

    fake_bedrock.responder = agent([ToolUse("slow", {})])
    conv = make_conv(tools=[slow], history=HISTORY)
    stream = conv.stream("go")

    async def consume() -> None:
        async for _ in stream.events():
            pass

    task = asyncio.create_task(consume())
    await running.wait()
    if how == "aclose":
        await stream.aclose()
        with pytest.raises(Exception):  # noqa: B017  # StreamClosedError or similar
            await task
    else:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    await asyncio.wait_for(cancelled.wait(), 5)
    assert stream.status == "cancelled"
    assert conv.history == HISTORY and not conv.busy
    assert len(fake_bedrock.requests) == 1
    await fake_bedrock.wait_for_disconnects(1)


async def test_max_tool_rounds_exceeded_fails_the_turn(
    fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """A model that keeps calling tools past max_tool_rounds raises ToolLoopError."""
    fake_bedrock.responder = agent(*[[ToolUse("weather", {"city": "Paris"})]] * 5)
    conv = make_conv(tools=[weather], history=HISTORY)
    with pytest.raises(ToolLoopError, match="max_tool_rounds=2"):
        await conv.send("loop", max_tool_rounds=2)
    assert len(fake_bedrock.requests) == 3 and len(calls) == 2
    assert conv.history == HISTORY and not conv.busy


async def test_a_plain_tool_spec_leaves_the_call_to_the_caller(
    fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """A requested tool that cannot run (a ToolSpec) ends the turn with stop_reason tool_use."""
    manual = ToolSpec(name="manual", description="Run by the caller.", input_schema={})
    fake_bedrock.responder = agent([ToolUse("manual", {})])
    result = await make_conv(tools=[manual, weather]).send("manual please")
    assert result.stop_reason == "tool_use" and result.tool_uses[0].name == "manual"
    assert len(fake_bedrock.requests) == 1 and len(result.messages) == 2


async def test_bad_loop_arguments_fail_before_io(make_conv: MakeConv) -> None:
    """tool_timeout and max_tool_rounds are checked at the call."""
    conv = make_conv(tools=[weather])
    with pytest.raises(ValueError, match="tool_timeout"):
        conv.stream("x", tool_timeout=0)
    with pytest.raises(TypeError, match="max_tool_rounds"):
        conv.stream("x", max_tool_rounds="3")  # type: ignore[arg-type]


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
async def test_a_fault_in_the_second_round_leaves_history_unchanged(
    fake_bedrock: FakeBedrock, make_conv: MakeConv, case: Case
) -> None:
    """Each fault of the reliability matrix in round two: the turn fails as a whole, the tool
    ran once, retries happen only before round two's first content, history is unchanged and
    every connection is closed."""
    first = agent([ToolUse("weather", {"city": "Paris"})])

    def respond(request: Any) -> Any:
        return first(request) if not tool_results(request) else case.script()

    fake_bedrock.responder = respond
    conv = make_conv(
        tools=[weather],
        history=HISTORY,
        retry=RetryPolicy(max_attempts=ATTEMPTS),
        timeouts=case.timeouts,
    )
    await conv.__aenter__()
    stream = conv.stream("question")
    with pytest.raises(ChatError) as caught:
        async for _ in stream:
            pass
    error = caught.value
    round_two_attempts = ATTEMPTS if case.retried else 1
    assert type(error) is case.error
    assert error.attempts == 1 + round_two_attempts
    assert calls == [{"city": "Paris"}]
    assert stream.status == "failed"
    assert conv.history == HISTORY and not conv.busy
    requests = 1 + round_two_attempts
    await fake_bedrock.wait_for_disconnects(requests, timeout=5.0)
    assert len(fake_bedrock.requests) == requests and fake_bedrock.open_streams == 0


async def test_history_gets_every_round_after_a_retried_second_round(
    fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """A throttled second round is retried (no content of it was shown) and the turn commits."""
    from aiostream_chat.testing import Fault

    fake_bedrock.responder = agent(
        [ToolUse("weather", {"city": "Paris"})], faults={1: [Fault.http(429)]}
    )
    conv = make_conv(tools=[weather])
    result = await conv.send("Paris?")
    assert len(fake_bedrock.requests) == 3 and calls == [{"city": "Paris"}]
    assert result.metrics.attempts == 3 and conv.history == result.messages
    assert conv.history[0] == Message.user("Paris?")


async def test_aclose_returns_although_a_tool_ignores_cancellation(
    fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """aclose() waits a bounded time for a tool that swallows CancelledError, then returns."""
    running = asyncio.Event()
    finish = asyncio.Event()

    @tool
    async def stubborn() -> str:
        """Ignores cancellation until told to finish."""
        running.set()
        while not finish.is_set():
            try:
                await finish.wait()
            except asyncio.CancelledError:
                continue
        return "done"

    fake_bedrock.responder = agent([ToolUse("stubborn", {})])
    conv = make_conv(tools=[stubborn], history=HISTORY)
    stream = conv.stream("go")
    events = stream.events()
    while not isinstance(await anext(events), ToolCallStarted):
        pass
    await running.wait()  # the call runs as a task of its own
    await stream.aclose()  # returns after the grace period although the tool still runs
    assert stream.status == "cancelled" and conv.history == HISTORY and not conv.busy
    assert not finish.is_set()  # the tool was still running when aclose() returned
    finish.set()
    await asyncio.sleep(0.01)


async def test_each_round_is_one_model_call_for_observers(
    fake_bedrock: FakeBedrock, make_conv: MakeConv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The instrumentation seam sees one call per round, each tool call between rounds, and
    one end of the whole turn."""
    from aiostream_chat import _observe

    seen: list[tuple[Any, ...]] = []

    class Recorder:
        def call_started(self, round_index: int, request: Any) -> None:
            seen.append(("call_started", round_index, len(request.body["messages"])))

        def sending(self) -> Any:
            return contextlib.nullcontext()

        @contextlib.contextmanager
        def tool_call(self, use: Any, description: Any) -> Any:
            seen.append(("tool_call", use.name))
            yield lambda result, failure: seen.append(("tool_result", failure))

        def retrying(self, attempt: int, delay: float, error: Any) -> None:
            seen.append(("retrying", attempt))

        def first_chunk(self, seconds: float) -> None:
            pass

        def call_ended(self, reply: Any, error: Any) -> None:
            seen.append(("call_ended", reply.stop_reason if reply else None))

        def turn_ended(self, reply: Any, error: Any, cancelled: bool) -> None:
            seen.append(("turn_ended", len(reply.messages) if reply else None, cancelled))

    monkeypatch.setattr(_observe, "observer_factory", lambda info: Recorder())
    fake_bedrock.responder = agent([ToolUse("weather", {"city": "Paris"})])
    await make_conv(tools=[weather]).send("Paris?")
    assert seen == [
        ("call_started", 0, 1),
        ("call_ended", "tool_use"),
        ("tool_call", "weather"),
        ("tool_result", None),
        ("call_started", 1, 3),
        ("call_ended", "end_turn"),
        ("turn_ended", 4, False),
    ]
