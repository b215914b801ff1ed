"""Tool use: the model's tool call streams in, the tool runs locally, its result goes back.

Run with:
    python examples/tool_use.py                     # the bundled emulator: no AWS account needed
    python examples/tool_use.py --model us.amazon.nova-micro-v1:0 --region us-east-1

The loop is the usual agent loop: stream a turn; while the reply stops for ``tool_use``, run
each requested tool and send the results back as ``ToolResultBlock``s in the next user turn.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from _emulator import add_bedrock_arguments, bedrock

from aiostream_chat import (
    AsyncConversation,
    ChatStream,
    ContentBlockStart,
    ContentBlockStop,
    Reply,
    TextDelta,
    ToolResultBlock,
    ToolSpec,
    ToolUseDelta,
)
from aiostream_chat.testing import ToolUse, reply

WEATHER = ToolSpec(
    name="get_weather",
    description="The current weather in a city.",
    input_schema={
        "type": "object",
        "properties": {"city": {"type": "string", "description": "The city name"}},
        "required": ["city"],
    },
)


async def get_weather(city: str) -> dict[str, Any]:
    """The tool itself: a stand-in for a real weather API call."""
    await asyncio.sleep(0.05)
    return {"city": city, "temperature_c": 18, "conditions": "sunny"}


async def show(stream: ChatStream) -> Reply:
    """Print a turn as it streams, tool calls included, and return its reply."""
    tool_blocks: set[int] = set()
    mid_line = False
    async with stream:
        async for event in stream.events():
            match event:
                case TextDelta(text=text):
                    print(text, end="", flush=True)
                    mid_line = True
                case ContentBlockStart(index=index, tool_use=tool) if tool is not None:
                    tool_blocks.add(index)
                    print(f"{chr(10) if mid_line else ''}[tool call] {tool.name}(", end="")
                    mid_line = True
                case ToolUseDelta(input_fragment=fragment):
                    print(fragment, end="", flush=True)  # the JSON input, as it streams
                case ContentBlockStop(index=index) if index in tool_blocks:
                    print(")")
                    mid_line = False
        result = await stream.get_reply()
    if mid_line:
        print()
    return result


async def main(args: argparse.Namespace) -> None:
    async with bedrock(args) as target:
        target.script(
            reply("", tool_uses=[ToolUse("get_weather", {"city": "Paris"}, chunks=4)], delay=0.05),
            reply("It is 18 °C and sunny in Paris: a fine day for a walk.", chunks=6, delay=0.05),
        )
        async with AsyncConversation(
            target.model_id,
            system="Use the tools you have to answer questions about the weather.",
            tools=[WEATHER],
            **target.connection,
        ) as conv:
            result = await show(conv.stream("What's the weather like in Paris right now?"))
            while result.stop_reason == "tool_use":
                results = []
                for call in result.tool_uses:
                    output = await get_weather(**call.input)
                    print(f"[tool result] {json.dumps(output)}")
                    results.append(
                        ToolResultBlock(
                            call.tool_use_id, content=[{"json": output}], status="success"
                        )
                    )
                result = await show(conv.stream(results))
            print(f"Final answer: {result.text}")
            print(f"History: {len(conv.history)} messages (question, tool call, result, answer)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_bedrock_arguments(parser)
    asyncio.run(main(parser.parse_args()))
