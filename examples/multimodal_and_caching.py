"""Multimodal and caching: ask about an image with a cached system prompt and thinking on.

Run with:
    python examples/multimodal_and_caching.py                  # the bundled emulator
    python examples/multimodal_and_caching.py --image cat.png  # your own image
    python examples/multimodal_and_caching.py \\
        --model us.anthropic.claude-sonnet-4-20250514-v1:0 --region us-east-1

Two turns share one long system prompt marked for caching (``Cache(system=True)``): the first
writes the cache, the second reads it. Extended thinking is on (``Thinking(budget_tokens=...)``),
so each reply carries the model's reasoning. The script prints the token count before sending,
the reasoning, the answer and the cache figures of each turn.
"""

from __future__ import annotations

import argparse
import asyncio
import struct
import zlib

from _emulator import add_bedrock_arguments, bedrock

from aiostream_chat import (
    AsyncConversation,
    Cache,
    ImageBlock,
    InferenceConfig,
    Reply,
    RequestOptions,
    TextBlock,
    Thinking,
)
from aiostream_chat.testing import reply

CLAUDE = "us.anthropic.claude-sonnet-4-20250514-v1:0"  # thinking needs a model that reasons
SYSTEM = (
    "You are a careful art critic. Describe images precisely: colours, shapes, layout. "
    "Answer in two sentences at most. " * 40  # long enough to be worth caching
)


def sample_png() -> bytes:
    """A 4x4 PNG: a blue square with a red diagonal."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    rows = b"".join(
        b"\x00" + b"".join(b"\xff\x00\x00" if x == y else b"\x00\x40\xff" for x in range(4))
        for y in range(4)
    )
    header = struct.pack(">IIBBBBB", 4, 4, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
    return png + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def show(label: str, answer: Reply) -> None:
    usage = answer.usage
    print(f"[{label}] reasoning: {answer.reasoning}")
    print(f"[{label}] answer: {answer.text}")
    print(
        f"[{label}] cache: {usage.cache_write_input_tokens} tokens written, "
        f"{usage.cache_read_input_tokens} read; {usage.input_tokens} other input tokens"
    )


async def main(args: argparse.Namespace) -> None:
    async with bedrock(args) as target:
        model_id = CLAUDE if target.fake is not None and args.model is None else target.model_id
        # What the emulator answers; real Bedrock writes its own replies and cache figures.
        target.script(
            reply(
                "A blue square crossed by a red diagonal from top left to bottom right.",
                reasoning="The image is tiny: mostly blue pixels, red ones on the diagonal.",
                usage={
                    "inputTokens": 30,
                    "outputTokens": 40,
                    "totalTokens": 1270,
                    "cacheWriteInputTokens": 1200,
                    "cacheReadInputTokens": 0,
                },
            ),
            reply(
                "Red and blue: a warm line on a cool ground.",
                reasoning="The user asks about colours; I saw red and blue.",
                usage={
                    "inputTokens": 80,
                    "outputTokens": 20,
                    "totalTokens": 1300,
                    "cacheWriteInputTokens": 0,
                    "cacheReadInputTokens": 1200,
                },
            ),
        )
        image = (
            await ImageBlock.from_path(args.image)
            if args.image
            else ImageBlock("png", sample_png())
        )
        options = RequestOptions(
            thinking=Thinking(budget_tokens=1024), cache=Cache(system=True, ttl="5m")
        )
        async with AsyncConversation(
            model_id,
            system=SYSTEM,
            inference=InferenceConfig(max_tokens=2048),
            options=options,
            **target.connection,
        ) as conv:
            question = [TextBlock("What does this image show?"), image]
            print(f"Input tokens before sending: {await conv.count_tokens(question)}")
            show("turn 1", await conv.send(question))
            show("turn 2", await conv.send("Which colours did you see?"))

        if target.fake is not None:
            sent = target.fake.requests[-1].body
            print(f"Sent system blocks: {[next(iter(b)) for b in sent['system']]}")
            print(f"Sent additionalModelRequestFields: {sent['additionalModelRequestFields']}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", help="an image file to ask about (png, jpeg, gif, webp)")
    add_bedrock_arguments(parser)
    asyncio.run(main(parser.parse_args()))
