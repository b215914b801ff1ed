"""Tool use with @tool: the stream runs the tools the model asks for and streams its answer.

Run with:
    python examples/tool_use.py                     # the bundled emulator: no AWS account needed
    python examples/tool_use.py --model us.amazon.nova-micro-v1:0 --region us-east-1

Decorate plain functions with ``@tool``: the input schema comes from the signature, the
description from the docstring. When the model stops for ``tool_use``, the stream validates the
arguments, runs the calls concurrently (sync functions in a worker thread), sends the results
back and streams the next message, all in ONE turn: one ``async for``, and the history gains
every message of the exchange only when the final answer has arrived.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Annotated, Literal

from _emulator import add_bedrock_arguments, bedrock

from aiostream_chat import (
    AsyncConversation,
    TextDelta,
    ToolCallFinished,
    ToolCallStarted,
    tool,
)
from aiostream_chat.testing import ToolUse, agent


@tool
async def get_weather(
    city: Annotated[str, "The city name, e.g. Paris"],
    unit: Literal["celsius", "fahrenheit"] = "celsius",
) -> dict[str, object]:
    """The current weather in a city."""
    await asyncio.sleep(0.05)  # a stand-in for a real weather API call
    temperature = 18 if unit == "celsius" else 64
    return {"city": city, "temperature": temperature, "unit": unit, "conditions": "sunny"}


@tool
def local_time(city: Annotated[str, "The city name"]) -> str:
    """The local time in a city (a sync function: it runs in a worker thread)."""
    return f"It is 14:05 in {city}."


async def main(args: argparse.Namespace) -> None:
    async with bedrock(args) as target:
        if target.fake is not None:  # the emulated model calls both tools at once, then answers
            target.fake.responder = agent(
                [
                    ToolUse("get_weather", {"city": "Paris"}),
                    ToolUse("local_time", {"city": "Paris"}),
                ],
                answer="It is 18 °C and sunny in Paris, and 14:05 there: a fine time for a walk.",
                say="Let me check. ",
                chunks=6,
                delay=0.03,
            )
        async with AsyncConversation(
            target.model_id,
            system="Use the tools you have to answer questions about weather and time.",
            tools=[get_weather, local_time],
            **target.connection,
        ) as conv:
            stream = conv.stream("What's the weather like in Paris, and what time is it there?")
            mid_line = False
            async with stream:
                async for event in stream.events():
                    match event:
                        case TextDelta(text=text):
                            print(text, end="", flush=True)
                            mid_line = True
                        case ToolCallStarted(name=name, input=tool_input):
                            print(f"{chr(10) if mid_line else ''}[tool call] {name}({tool_input})")
                            mid_line = False
                        case ToolCallFinished(name=name, result=result, duration=seconds):
                            print(f"[tool result] {name} -> {result.content} ({seconds:.2f} s)")
                reply = await stream.get_reply()
            print(f"\nFinal answer: {reply.text}")
            print(f"Model calls: {reply.metrics.attempts}; tokens: {reply.usage.total_tokens}")
            print(f"History: {len(conv.history)} messages (question, calls, results, answer)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_bedrock_arguments(parser)
    asyncio.run(main(parser.parse_args()))
