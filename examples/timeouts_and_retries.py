"""Timeouts and retries: a throttled turn that recovers, an idle timeout, a cancelled turn.

Run with:
    python examples/timeouts_and_retries.py         # the bundled emulator: no AWS account needed
    python examples/timeouts_and_retries.py --model us.amazon.nova-micro-v1:0 --region us-east-1

On the emulator each failure is scripted; on real Bedrock the turns usually just succeed (the
idle timeout is set low enough that a slow model may trip it). Whatever happens, the history
only ever grows by whole completed turns: failed, timed-out and cancelled turns leave no trace.
"""

from __future__ import annotations

import argparse
import asyncio

from _emulator import add_bedrock_arguments, bedrock

from aiostream_chat import (
    AsyncConversation,
    ChatError,
    IdleTimeoutError,
    Retrying,
    RetryPolicy,
    TextDelta,
    Timeouts,
)
from aiostream_chat.testing import Fault, reply


async def throttled_then_recovered(conv: AsyncConversation) -> None:
    print("1. A throttled turn, retried before any text reached us")
    print("   ", end="")
    async with conv.stream("Name three colours.") as stream:
        async for event in stream.events():
            match event:
                case Retrying(attempt=attempt, delay=delay, error=error):
                    print(
                        f"Retrying: attempt {attempt} in {delay:.2f}s after {error!r}\n   ", end=""
                    )
                case TextDelta(text=text):
                    print(text, end="", flush=True)
        result = await stream.get_reply()
    print(f"\n   completed after {result.metrics.attempts} attempt(s)")
    print(f"   history: {len(conv.history)} messages")


async def idle_timeout(conv: AsyncConversation) -> None:
    print("2. A stream that stalls mid-reply: the idle timeout fires")
    stream = conv.stream("Tell me a long story.", timeouts=Timeouts(idle=0.5))
    print("   ", end="")
    try:
        async for text in stream:
            print(text, end="", flush=True)
        print("\n   completed: the model never paused for 0.5s")
    except IdleTimeoutError as exc:
        # Text already reached the caller, so the turn is not retried (no duplicated output).
        print(f"\n   {type(exc).__name__}: {exc}")
        print(f"   partial_text kept on the error: {exc.partial_text!r}")
    print(f"   status: {stream.status}; history: {len(conv.history)} messages")


async def cancelled_turn(conv: AsyncConversation) -> None:
    print("3. A turn cancelled by its caller mid-stream")
    stream = conv.stream("Count slowly to twenty.")
    first_text = asyncio.Event()

    async def consume() -> None:
        async for text in stream:
            print(text, end="", flush=True)
            first_text.set()

    print("   ", end="")
    task = asyncio.create_task(consume())
    await first_text.wait()
    await asyncio.sleep(0.2)
    task.cancel()  # e.g. the user pressed Stop; the HTTP response is closed at once
    await asyncio.gather(task, return_exceptions=True)
    print(f"\n   status: {stream.status}; busy: {conv.busy}; history: {len(conv.history)} messages")


async def main(args: argparse.Namespace) -> None:
    async with bedrock(args) as target:
        target.script(
            # 1. HTTP 429 first, then a good reply: the retry is invisible but for the event.
            reply(fault=Fault.http(429)),
            reply("Red, green and blue.", chunks=4, delay=0.05),
            # 2. Two chunks, then a 5 s silence: longer than the 0.5 s idle timeout.
            reply(
                "Once upon a time there was a stream.", fault=Fault.stall(5, after=2), delay=0.05
            ),
            # 3. A slow count, cancelled after a few numbers.
            reply(", ".join(str(n) for n in range(1, 21)) + ".", chunks=20, delay=0.1),
            # 4. A final turn, to show the conversation carries on normally.
            reply("All good: two completed turns are in the history.", chunks=5, delay=0.05),
        )
        async with AsyncConversation(
            target.model_id,
            retry=RetryPolicy(max_attempts=3, initial_delay=0.2),
            timeouts=Timeouts(first_token=20.0, idle=10.0, total=60.0),
            **target.connection,
        ) as conv:
            await throttled_then_recovered(conv)
            await idle_timeout(conv)
            await cancelled_turn(conv)
            if target.fake is not None:
                seen = await target.fake.wait_for_disconnects(len(target.fake.requests))
                cut = sum(not d.completed for d in seen)
                print(f"   the emulator saw {cut} response(s) cut short by the client")

            print("4. The conversation carries on")
            try:
                final = await conv.send("Is everything still fine?")
                print(f"   {final.text}")
            except ChatError as exc:
                print(f"   failed: {exc!r}")
            print(f"   history: {len(conv.history)} messages")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_bedrock_arguments(parser)
    asyncio.run(main(parser.parse_args()))
