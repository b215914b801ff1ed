"""Fan-out: answer a list of prompts concurrently, with a live progress bar on a terminal.

Run with:
    python examples/fan_out.py                      # the bundled emulator: no AWS account needed
    python examples/fan_out.py --model us.amazon.nova-micro-v1:0 --region us-east-1 --concurrency 4

Each prompt is answered on its own fork of the conversation (so they share the system prompt
and history, and never see each other), at most ``--concurrency`` at once, over one shared
connection pool. ``fan_out_stream`` hands back ``(index, event)`` pairs as they arrive, which
is what drives the progress bar (drawn on stderr only when stderr is a terminal, so a
redirected run stays clean); ``fan_out`` is the one-call form when only replies matter.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from _emulator import add_bedrock_arguments, bedrock

from aiostream_chat import AsyncConversation, Reply, TextDelta, TurnCompleted, TurnFailed

PROMPTS = [
    "What is a B-tree, in one sentence?",
    "What is a write-ahead log, in one sentence?",
    "What is MVCC, in one sentence?",
    "What is a bloom filter, in one sentence?",
    "What is a vector clock, in one sentence?",
    "What is a skip list, in one sentence?",
    "What is an LSM tree, in one sentence?",
    "What is two-phase commit, in one sentence?",
]


class ProgressBar:
    """A one-line progress bar redrawn in place on stderr, when stderr is a terminal."""

    def __init__(self, total: int, width: int = 30) -> None:
        self.enabled = sys.stderr.isatty()
        self.total = total
        self.width = width
        self.done = 0
        self.failed = 0
        self.chars = 0
        self._start = time.monotonic()
        self._drawn = 0.0

    def draw(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (not force and now - self._drawn < 0.05):  # ~20 redraws a second
            return
        self._drawn = now
        filled = self.width * self.done // max(self.total, 1)
        bar = "#" * filled + "-" * (self.width - filled)
        line = (
            f"\r[{bar}] {self.done}/{self.total} done, {self.failed} failed, "
            f"{self.chars} chars streamed, {now - self._start:.1f}s"
        )
        sys.stderr.write(line)
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            self.draw(force=True)
            sys.stderr.write("\n")


async def main(args: argparse.Namespace) -> None:
    async with (
        bedrock(args) as target,
        AsyncConversation(target.model_id, system="Answer briefly.", **target.connection) as conv,
    ):
        replies: dict[int, Reply] = {}
        errors: dict[int, BaseException] = {}
        bar = ProgressBar(len(PROMPTS))
        async for index, event in conv.fan_out_stream(PROMPTS, concurrency=args.concurrency):
            match event:
                case TextDelta(text=text):
                    bar.chars += len(text)
                case TurnCompleted(reply=reply):
                    replies[index] = reply
                    bar.done += 1
                case TurnFailed(error=error):
                    errors[index] = error
                    bar.done += 1
                    bar.failed += 1
            bar.draw(force=isinstance(event, TurnCompleted | TurnFailed))
        bar.close()

        for index, prompt in enumerate(PROMPTS):
            print(f"{index + 1}. {prompt}")
            if index in replies:
                print(f"   {replies[index].text}")
            else:
                print(f"   failed: {errors[index]!r}")
        tokens = sum(r.usage.total_tokens for r in replies.values())
        print(f"{len(replies)} answered, {len(errors)} failed, {tokens} tokens in total")
        # The parent conversation is untouched: every prompt ran on its own fork.
        print(f"Parent history: {len(conv.history)} messages")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_bedrock_arguments(parser)
    parser.add_argument("--concurrency", type=int, default=4, help="turns in flight at once")
    asyncio.run(main(parser.parse_args()))
