"""Quickstart: stream a reply chunk by chunk, then print the whole message and its usage.

Run with:
    python examples/quickstart.py                   # the bundled emulator: no AWS account needed
    python examples/quickstart.py --model us.amazon.nova-micro-v1:0 --region us-east-1

Two turns of one conversation show the two ways to consume a stream: a plain ``async for``
over the text, and ``async with`` (which closes the stream on exit, whatever happens).
"""

from __future__ import annotations

import argparse
import asyncio

from _emulator import add_bedrock_arguments, bedrock

from aiostream_chat import AsyncConversation, InferenceConfig
from aiostream_chat.testing import reply

FIRST = "Describe a purely fictional database product in one sentence."
SECOND = "Now give it a catchy name, in one sentence."


async def main(args: argparse.Namespace) -> None:
    async with bedrock(args) as target:
        # What the emulator answers; real Bedrock writes its own replies.
        target.script(
            reply(
                "QuarkDB is an imaginary database that stores every row as a tiny melody, "
                "so slow queries literally sound out of tune.",
                chunks=10,
                delay=0.05,
            ),
            reply("Call it SongStore: the database you can hum.", chunks=5, delay=0.05),
        )
        async with AsyncConversation(
            target.model_id,
            system="You are a concise, playful technical writer.",
            inference=InferenceConfig(max_tokens=200, temperature=0.7),
            **target.connection,
        ) as conv:
            # 1. The plain form: iterate the text as it arrives, then ask for the reply.
            print(f"> {FIRST}")
            stream = conv.stream(FIRST)
            async for chunk in stream:
                print(chunk, end="", flush=True)
            print()
            first = await stream.get_reply()
            print(f"[{first.stop_reason}; {first.usage.total_tokens} tokens]")

            # 2. The context-manager form: the stream (and its HTTP response) is closed when
            #    the block exits, even on an exception or cancellation.
            print(f"> {SECOND}")
            async with conv.stream(SECOND) as stream:
                async for chunk in stream:
                    print(chunk, end="", flush=True)
                second = await stream.get_reply()
            print()

        print()
        print("Total message:", second.message.text)
        usage = second.usage
        print(
            f"Usage: {usage.input_tokens} input + {usage.output_tokens} output "
            f"= {usage.total_tokens} tokens"
        )
        ttft = second.metrics.time_to_first_token or 0.0
        print(
            f"Time to first token: {ttft * 1000:.0f} ms; duration: {second.metrics.duration:.2f} s"
        )
        print(f"History: {len(conv.history)} messages (two completed turns)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_bedrock_arguments(parser)
    asyncio.run(main(parser.parse_args()))
