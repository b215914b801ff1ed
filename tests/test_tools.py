"""Tool.from_function / @tool: schemas from signatures, validated calls, concurrent rounds."""

from __future__ import annotations

import asyncio
import threading
from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, Field

from aiostream_chat import Tool, ToolResultBlock, ToolSpec, ToolUseBlock, tool
from aiostream_chat._tools import CANCEL_GRACE, ToolRound, as_tools, run_tool_calls


class Address(BaseModel):
    """A postal address."""

    city: str
    zip_code: str | None = None


@tool
def forecast(
    city: Annotated[str, "The city name"],
    days: Annotated[int, Field(ge=1, le=7, description="How many days ahead")] = 1,
    unit: Literal["c", "f"] = "c",
    address: Address | None = None,
) -> dict[str, Any]:
    """The weather forecast for a city.

    Args:
        unit: Celsius or Fahrenheit.
    """
    return {"city": city, "days": days, "unit": unit, "thread": threading.current_thread().name}


@tool(name="lookup", description="Look a word up.")
async def find_word(word: str) -> str:
    return f"{word}: a word"


def use(tool_name: str, tool_use_id: str = "t1", **tool_input: Any) -> ToolUseBlock:
    return ToolUseBlock(tool_use_id=tool_use_id, name=tool_name, input=tool_input)


def text_of(result: ToolResultBlock) -> str:
    return " ".join(str(c.get("text", c.get("json"))) for c in result.content)


def test_schema_comes_from_the_signature_and_docstring() -> None:
    """Defaults, Literal, nested models and Annotated/docstring descriptions reach the schema."""
    assert isinstance(forecast, Tool) and isinstance(forecast, ToolSpec)
    assert forecast.name == "forecast"
    assert forecast.description == "The weather forecast for a city."
    schema = forecast.input_schema
    props = schema["properties"]
    assert schema["required"] == ["city"]
    assert props["city"]["description"] == "The city name"
    assert props["days"] == {
        "default": 1,
        "description": "How many days ahead",
        "maximum": 7,
        "minimum": 1,
        "title": "Days",
        "type": "integer",
    }
    assert props["unit"]["enum"] == ["c", "f"] and props["unit"]["description"] == (
        "Celsius or Fahrenheit."
    )
    assert schema["$defs"]["Address"]["required"] == ["city"]
    assert schema["additionalProperties"] is False


def test_decorator_with_arguments_overrides_name_and_description() -> None:
    """@tool(name=..., description=...) names the tool; the Bedrock spec carries both."""
    spec = find_word.to_bedrock()["toolSpec"]
    assert spec["name"] == "lookup" and spec["description"] == "Look a word up."
    assert spec["inputSchema"]["json"]["required"] == ["word"]


def test_bad_functions_are_refused_with_a_plain_sentence() -> None:
    """No docstring, *args or a bad name raise at decoration time."""

    def undocumented(x: int) -> int:
        return x

    def star(*args: int) -> None:
        """Star."""

    with pytest.raises(ValueError, match="needs a description"):
        Tool.from_function(undocumented)
    with pytest.raises(TypeError, match="named parameters only"):
        Tool.from_function(star)
    with pytest.raises(ValueError, match="tool name"):
        Tool.from_function(forecast.call, name="has space")
    with pytest.raises(TypeError, match="must be a function"):
        Tool.from_function(42)  # type: ignore[arg-type]


def test_plain_functions_in_tools_are_wrapped_and_names_must_be_unique() -> None:
    """tools= accepts ToolSpec, Tool and plain functions (wrapped); duplicates are refused."""

    def local_time(zone: str) -> str:
        """The local time in a time zone."""
        return "12:00"

    spec = ToolSpec(name="manual", description="Handled by the caller.", input_schema={})
    tools = as_tools([spec, forecast, local_time])
    assert tools[0] is spec and tools[1] is forecast
    assert isinstance(tools[2], Tool) and tools[2].name == "local_time"
    with pytest.raises(ValueError, match="unique"):
        as_tools([forecast, forecast])
    with pytest.raises(TypeError, match="ToolSpec"):
        as_tools([3])


async def test_sync_tools_run_in_a_worker_thread_and_async_ones_on_the_loop() -> None:
    """A sync function never blocks the loop: it runs in another thread."""
    result = await forecast.run(use("forecast", city="Paris", days=2))
    assert result.status == "success"
    (content,) = result.content
    assert content["json"]["city"] == "Paris" and content["json"]["days"] == 2
    assert content["json"]["thread"] != threading.current_thread().name
    word = await find_word.run(use("lookup", word="hi"))
    assert word.content == ({"text": "hi: a word"},) and word.status == "success"


async def test_nested_models_arrive_as_model_instances() -> None:
    """Arguments are validated by pydantic: the function gets an Address, not a dict."""
    seen: list[Any] = []

    @tool
    def ship(to: Address) -> str:
        """Ship a parcel."""
        seen.append(to)
        return "shipped"

    result = await ship.run(use("ship", to={"city": "Oslo"}))
    assert result.status == "success"
    assert seen == [Address(city="Oslo")]


async def test_invalid_arguments_become_an_error_result_the_model_can_read() -> None:
    """A missing field, a wrong type and an unknown field are each named in the result."""
    result = await forecast.run(use("forecast", days="many", town="Paris"))
    assert result.status == "error"
    text = text_of(result)
    assert "city: Field required" in text
    assert "days: Input should be a valid integer" in text
    assert "town: Extra inputs are not permitted" in text


async def test_exceptions_become_error_results() -> None:
    """A tool that raises gives the model the exception's type and message."""

    @tool
    async def broken(x: int) -> int:
        """Always fails."""
        raise RuntimeError(f"no luck with {x}")

    result = await broken.run(use("broken", x=3))
    assert result.status == "error"
    assert text_of(result) == "Tool 'broken' failed: RuntimeError: no luck with 3"


async def test_return_values_become_tool_result_content() -> None:
    """str -> text, dict/model -> json, other JSON values -> {"result": ...}."""

    @tool
    def echo(kind: str) -> Any:
        """Echo."""
        return {"str": "plain", "model": Address(city="Rome"), "list": [1, 2]}[kind]

    assert (await echo.run(use("echo", kind="str"))).content == ({"text": "plain"},)
    model = await echo.run(use("echo", kind="model"))
    assert model.content == ({"json": {"city": "Rome", "zip_code": None}},)
    assert (await echo.run(use("echo", kind="list"))).content == ({"json": {"result": [1, 2]}},)


async def test_a_round_runs_calls_concurrently_each_under_the_timeout() -> None:
    """Two slow calls overlap, a third times out, an unknown tool gets an error, order kept."""
    started: list[str] = []
    both_running = asyncio.Event()

    @tool
    async def wait(name: str) -> str:
        """Waits until both calls are running."""
        started.append(name)
        if len(started) == 2:
            both_running.set()
        await both_running.wait()
        return name

    @tool
    async def hang() -> str:
        """Never returns."""
        await asyncio.Event().wait()
        return "never"

    uses = [
        use("wait", "a", name="a"),
        use("hang", "h"),
        use("wait", "b", name="b"),
        use("nope", "n"),
    ]
    results = await run_tool_calls([wait, hang], uses, timeout=0.2)
    assert [r.tool_use_id for r in results] == ["a", "h", "b", "n"]
    assert [r.status for r in results] == ["success", "error", "success", "error"]
    assert "did not finish within 0.2 s" in text_of(results[1])
    assert text_of(results[3]) == "There is no tool named 'nope'. Available tools: hang, wait."


async def test_a_round_reports_calls_as_they_finish() -> None:
    """next_finished() hands out the first call to finish first, then None at the end."""
    release = asyncio.Event()

    @tool
    async def slow() -> str:
        """Slow."""
        await release.wait()
        return "slow"

    @tool
    async def fast() -> str:
        """Fast."""
        return "fast"

    batch = ToolRound(
        {"slow": slow, "fast": fast}, [use("slow", "s"), use("fast", "f")], timeout=None
    )
    batch.start()
    first = await batch.next_finished()
    assert first is not None and first[0].tool_use_id == "f"
    release.set()
    second = await batch.next_finished()
    assert second is not None and second[0].tool_use_id == "s" and second[2] >= 0
    assert await batch.next_finished() is None
    assert [r.tool_use_id for r in batch.results()] == ["s", "f"]


async def test_cancelling_a_round_cancels_every_running_call() -> None:
    """Cancellation reaches each running async tool (it sees CancelledError)."""
    cancelled: list[str] = []
    running = asyncio.Event()

    @tool
    async def block(name: str) -> str:
        """Blocks."""
        try:
            running.set()
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(name)
            raise
        return name

    task = asyncio.create_task(
        run_tool_calls([block], [use("block", "1", name="1"), use("block", "2", name="2")])
    )
    await running.wait()
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sorted(cancelled) == ["1", "2"]


async def test_a_tool_that_ignores_cancellation_cannot_hang_aclose() -> None:
    """aclose() gives up after its grace period and leaves the stubborn call detached."""
    finish = asyncio.Event()

    @tool
    async def stubborn() -> str:
        """Ignores cancellation until told to finish."""
        while not finish.is_set():
            try:
                await finish.wait()
            except asyncio.CancelledError:
                continue
        return "done"

    batch = ToolRound({"stubborn": stubborn}, [use("stubborn")], timeout=None)
    batch.start()
    await asyncio.sleep(0.01)
    await batch.aclose(grace=0.05)  # returns although the call is still running
    assert CANCEL_GRACE > 0
    finish.set()  # let it end before the loop closes
    await asyncio.sleep(0.01)


def test_a_snapshot_keeps_the_spec_of_a_tool_and_round_trips() -> None:
    """snapshot() holds a Tool as its ToolSpec (functions are not data), so JSON round-trips."""
    from aiostream_chat import AsyncConversation, ConversationState

    conv = AsyncConversation("us.amazon.nova-micro-v1:0", tools=[forecast], region_name="x")
    state = conv.snapshot()
    assert type(state.tools[0]) is ToolSpec and state.tools[0].name == "forecast"
    assert ConversationState.model_validate_json(state.model_dump_json()) == state


async def test_a_sync_tool_that_overruns_its_timeout_is_reported_and_abandoned() -> None:
    """A blocked sync tool cannot be interrupted: the call times out and its thread is left."""
    release = threading.Event()

    @tool
    def blocked() -> str:
        """Blocks its worker thread."""
        release.wait(10)
        return "late"

    try:
        result = await blocked.run(use("blocked"), timeout=0.05)
    finally:
        release.set()
    assert result.status == "error" and "did not finish within 0.05 s" in text_of(result)
