"""``aiostream-chat fan-out``: answer a JSONL file of prompts concurrently.

Input: one prompt per line, a JSON string or an object with a ``"prompt"`` string (an ``"id"``
is copied to the output). Output: one JSON object per prompt, in input order, written as soon
as every earlier prompt is done: ``index``, ``id`` (if given), ``text``, ``stop_reason``,
``usage``, ``time_to_first_token``, ``attempts`` and ``error`` (null, or its ``type``, ``message``
and ``partial_text``). A summary goes to stderr; so does a progress bar, drawn only when stderr
is a terminal and wiped before each JSON line when stdout is that terminal too, so the two
never mix.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from collections.abc import Sequence
from typing import IO, Any

from ._cli_common import (
    EXIT_FAILED,
    EXIT_USAGE,
    CliError,
    Interrupted,
    open_conversation,
    positive_int,
    say,
)
from ._errors import ChatError
from ._events import TextDelta, TurnCompleted, TurnFailed

__all__ = ["Progress", "add_fan_out_arguments", "percentile", "read_prompts", "run_fan_out"]

_SHAPE = 'expected a JSON string or an object with a "prompt" string'


def add_fan_out_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prompts", metavar="PROMPTS.jsonl", help="the prompts ('-' for stdin)")
    parser.add_argument(
        "-o", "--output", default="-", metavar="REPLIES.jsonl", help="where to write (default -)"
    )
    parser.add_argument(
        "--concurrency",
        type=positive_int,
        default=8,
        metavar="N",
        help="turns in flight (default 8)",
    )
    parser.add_argument(
        "--no-progress",
        dest="progress",
        action="store_false",
        help="no progress bar (it is only ever drawn when stderr is a terminal)",
    )


def read_prompts(lines: Sequence[str], name: str) -> list[tuple[str, Any]]:
    """``(prompt, id)`` for each non-blank line; a bad line is a CliError naming it."""
    prompts: list[tuple[str, Any]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError as exc:
            raise CliError(f"{name}:{number}: not JSON ({exc})", EXIT_USAGE) from None
        ident = None
        if isinstance(item, dict):
            ident = item.get("id")
            item = item.get("prompt")
        if not isinstance(item, str):
            raise CliError(f"{name}:{number}: {_SHAPE}", EXIT_USAGE)
        if not item.strip():
            raise CliError(f"{name}:{number}: the prompt is empty", EXIT_USAGE)
        prompts.append((item, ident))
    return prompts


def percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank percentile ``q`` (0-100) of ``values``; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


class Progress:
    """A one-line progress bar on stderr, redrawn in place at most ten times a second."""

    def __init__(self, total: int, *, enabled: bool, width: int = 24) -> None:
        self.total = total
        self.enabled = enabled
        self.width = width
        self.done = 0
        self.failed = 0
        self.chars = 0
        self.start = time.monotonic()
        self._drawn = -1.0
        self._shown = False

    def update(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (not force and now - self._drawn < 0.1):
            return
        self._drawn = now
        filled = self.width * self.done // max(self.total, 1)
        bar = "#" * filled + "." * (self.width - filled)
        sys.stderr.write(
            f"\r[{bar}] {self.done}/{self.total} turns, {self.failed} failed, "
            f"{self.chars} chars, {now - self.start:.1f}s\x1b[K"
        )
        sys.stderr.flush()
        self._shown = True

    def wipe(self) -> None:
        """Erase the bar, leaving the cursor at the start of its empty line."""
        if self._shown:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
            self._shown = False

    def close(self) -> None:
        if self.enabled:
            self.update(force=True)
            sys.stderr.write("\n")
            sys.stderr.flush()


def _record(index: int, ident: Any, event: TurnCompleted | TurnFailed) -> dict[str, Any]:
    record: dict[str, Any] = {"index": index}
    if ident is not None:
        record["id"] = ident
    if isinstance(event, TurnCompleted):
        reply = event.reply
        usage = reply.usage.model_dump(include={"input_tokens", "output_tokens", "total_tokens"})
        return record | {
            "text": reply.text,
            "stop_reason": reply.stop_reason,
            "usage": usage,
            "time_to_first_token": reply.metrics.time_to_first_token,
            "attempts": reply.metrics.attempts,
            "error": None,
        }
    error = event.error
    partial = error.partial_text if isinstance(error, ChatError) else ""
    attempts = error.attempts if isinstance(error, ChatError) else None
    return record | {
        "text": "",
        "stop_reason": None,
        "usage": None,
        "time_to_first_token": None,
        "attempts": attempts,
        "error": {"type": type(error).__name__, "message": str(error), "partial_text": partial},
    }


def _summary(records: list[dict[str, Any]], seconds: float) -> str:
    failed = sum(r["error"] is not None for r in records)
    usages = [r["usage"] for r in records if r["usage"]]
    tokens_in = sum(u["input_tokens"] for u in usages)
    tokens_out = sum(u["output_tokens"] for u in usages)
    ttfts = [r["time_to_first_token"] for r in records if r["time_to_first_token"] is not None]
    p50, p95 = percentile(ttfts, 50), percentile(ttfts, 95)
    ttft = "n/a" if p50 is None or p95 is None else f"p50 {p50:.3f}s, p95 {p95:.3f}s"
    return (
        f"{len(records)} turns, {failed} failed; {tokens_in + tokens_out} tokens "
        f"({tokens_in} in, {tokens_out} out); time to first token {ttft}; {seconds:.1f}s"
    )


def _load(path: str) -> list[tuple[str, Any]]:
    if path == "-":
        return read_prompts(sys.stdin.readlines(), "<stdin>")
    try:
        with open(path, encoding="utf-8") as file:
            return read_prompts(file.readlines(), path)
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}", EXIT_USAGE) from None


def _open_output(path: str) -> IO[str]:
    if path == "-":
        return sys.stdout
    try:
        return open(path, "w", encoding="utf-8")  # closed by run_fan_out
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror}", EXIT_USAGE) from None


async def run_fan_out(args: argparse.Namespace) -> int:
    items = _load(args.prompts)
    output = _open_output(args.output)
    progress = Progress(len(items), enabled=args.progress and sys.stderr.isatty())
    # A bar and JSON lines on one terminal: wipe the bar before each line, then redraw it.
    shared_terminal = progress.enabled and output.isatty()
    records: list[dict[str, Any]] = []
    waiting: dict[int, dict[str, Any]] = {}  # finished, but an earlier prompt is not yet
    try:
        async with open_conversation(args) as conv:
            events = conv.fan_out_stream([p for p, _ in items], concurrency=args.concurrency)
            try:
                async for index, event in events:
                    if isinstance(event, TextDelta):
                        progress.chars += len(event.text)
                    elif isinstance(event, TurnCompleted | TurnFailed):
                        progress.done += 1
                        progress.failed += isinstance(event, TurnFailed)
                        waiting[index] = _record(index, items[index][1], event)
                        if shared_terminal and len(records) in waiting:
                            progress.wipe()
                        while len(records) in waiting:  # write in input order, as soon as can be
                            record = waiting.pop(len(records))
                            output.write(json.dumps(record, ensure_ascii=False) + "\n")
                            output.flush()
                            records.append(record)
                    progress.update(force=isinstance(event, TurnCompleted | TurnFailed))
            finally:
                close = getattr(events, "aclose", None)
                if close is not None:
                    await close()  # on Ctrl-C: cancel the turns still running, close streams
    except asyncio.CancelledError:
        written = f"{len(records)} of {len(items)} replies written"
        raise Interrupted(f"{written}; the turns in flight were cancelled") from None
    finally:
        progress.close()
        if output is not sys.stdout:
            output.close()
    say(_summary(records, time.monotonic() - progress.start))
    return EXIT_FAILED if progress.failed else 0
