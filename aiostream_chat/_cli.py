"""The ``aiostream-chat`` command (also ``python -m aiostream_chat``).

``chat`` streams replies to the terminal as they arrive: one turn for a prompt given as an
argument, or a multi-turn conversation read line by line from stdin until end of input.
At an interactive prompt (stdin a terminal), Ctrl-C during a reply cancels that reply only
(its connection closes, the history is unchanged) and the prompt comes back; Ctrl-C or
Ctrl-D at the prompt ends the chat on a fresh line.
``fan-out`` answers every prompt of a JSONL file concurrently (see ``_cli_fanout``).

Exit status: 0 on success, 1 when a turn failed, 2 for bad usage or input, 130 after Ctrl-C
(which cancels the turn in flight and closes its connection first). Errors are one line on
stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any, NoReturn, TypeVar

from . import __version__
from ._cli_common import (
    EMULATOR_MODEL,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    PROG,
    CliError,
    Interrupted,
    check_region,
    describe,
    open_conversation,
    positive_int,
    say,
)
from ._cli_fanout import add_fan_out_arguments, run_fan_out
from ._conversation import AsyncConversation
from ._errors import ChatError
from ._events import Retrying, TextDelta
from ._models import DocumentBlock, ImageBlock, TextBlock
from ._validate import Prompt

__all__ = ["build_parser", "main"]

T = TypeVar("T")


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors on one line."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _temperature(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0:  # the upper bound depends on the model: Bedrock checks it
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def _common_options() -> _Parser:
    common = _Parser(add_help=False)
    where = common.add_argument_group("model and connection")
    where.add_argument("--model", metavar="ID", help="Bedrock model or inference profile ID")
    where.add_argument("--region", help="AWS region (default: from the AWS configuration)")
    where.add_argument("--endpoint-url", metavar="URL", help="send requests to this endpoint")
    where.add_argument(
        "--api-key",
        metavar="KEY",
        help="a Bedrock API key (bearer auth) instead of AWS credentials; "
        "AWS_BEARER_TOKEN_BEDROCK in the environment works too",
    )
    where.add_argument(
        "--emulator",
        action="store_true",
        help="run against the bundled Bedrock emulator, in-process (no AWS account needed)",
    )
    settings = common.add_argument_group("inference")
    settings.add_argument("--system", metavar="TEXT", help="system prompt")
    settings.add_argument("--max-tokens", type=positive_int, metavar="N", help="reply limit")
    settings.add_argument(
        "--temperature", type=_temperature, metavar="T", help="sampling temperature"
    )
    settings.add_argument(
        "--thinking",
        type=positive_int,
        metavar="BUDGET",
        help="turn on extended thinking with this token budget (Claude; at least 1024)",
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Stream Amazon Bedrock chat replies (ConverseStream) in the terminal.",
        epilog=f"Try it without AWS: {PROG} chat --emulator 'Hello!'",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )
    common = _common_options()
    chat = commands.add_parser(
        "chat",
        parents=[common],
        help="stream a reply; with no prompt, chat turn by turn reading lines from stdin",
        description="Stream the reply to PROMPT as it arrives. Without PROMPT, read one prompt "
        "per line from stdin until end of input, as one multi-turn conversation.",
    )
    chat.add_argument("prompt", nargs="?", metavar="PROMPT", help="the prompt (else stdin)")
    for flag, kind in (("--image", "an image"), ("--document", "a document")):
        chat.add_argument(
            flag,
            action="append",
            default=[],
            metavar="PATH",
            help=f"attach {kind} file to the (first) prompt; repeatable",
        )
    fan_out = commands.add_parser(
        "fan-out",
        parents=[common],
        help="answer every prompt of a JSONL file concurrently",
        description="Answer each prompt of a JSONL file (one JSON string, or an object with a "
        '"prompt" string, per line) on its own turn, concurrently. Replies are written in '
        "input order, one JSON object per line; a summary goes to stderr. Exits 1 if any "
        "turn failed.",
    )
    add_fan_out_arguments(fan_out)
    return parser


class _Output:
    """stdout, written as text arrives, remembering whether a line is left open."""

    def __init__(self) -> None:
        self.mid_line = False

    def write(self, text: str) -> None:
        if text:
            sys.stdout.write(text)
            sys.stdout.flush()
            self.mid_line = not text.endswith("\n")

    def end_line(self) -> None:
        if self.mid_line:
            self.write("\n")


async def _attachments(args: argparse.Namespace) -> list[ImageBlock | DocumentBlock]:
    """The --image and --document files as content blocks (read off the event loop)."""
    blocks: list[ImageBlock | DocumentBlock] = []
    try:
        for path in args.image:
            blocks.append(await ImageBlock.from_path(path))
        for path in args.document:
            blocks.append(await DocumentBlock.from_path(path))
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot attach: {exc}", EXIT_USAGE) from None
    return blocks


def _with(prompt: str, blocks: list[ImageBlock | DocumentBlock]) -> Prompt:
    return [TextBlock(text=prompt), *blocks] if blocks else prompt


async def _turn(conv: AsyncConversation, prompt: Prompt, out: _Output) -> None:
    """Stream one turn to stdout; retries are reported on stderr."""
    try:
        stream = conv.stream(prompt)
    except (TypeError, ValueError) as exc:
        raise CliError(f"bad prompt: {exc}", EXIT_USAGE) from None
    try:
        async with stream:
            async for event in stream.events():
                if isinstance(event, TextDelta):
                    out.write(event.text)
                elif isinstance(event, Retrying):
                    why = type(event.error).__name__
                    say(f"{why}; retrying in {event.delay:.1f}s (attempt {event.attempt})")
            await stream.get_reply()
    except asyncio.CancelledError:
        # Ctrl-C: leaving `async with` closed the stream and its connection already.
        raise Interrupted(
            "the turn in flight was cancelled; the conversation is unchanged"
        ) from None
    finally:
        out.end_line()  # on errors and Ctrl-C too, so the next line starts a line


async def _read_line() -> str | None:
    """The next line of stdin (None at its end), read on a daemon thread.

    A daemon thread, not the loop's executor: a read still blocked when Ctrl-C ends the
    program must not keep the process alive.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[str] = loop.create_future()

    def deliver(line: str) -> None:
        if not future.done():
            future.set_result(line)

    def read() -> None:
        line = sys.stdin.readline()
        with contextlib.suppress(RuntimeError):  # the loop has closed: we are exiting
            loop.call_soon_threadsafe(deliver, line)

    threading.Thread(target=read, name="stdin-reader", daemon=True).start()
    line = await future
    return line or None


class _CtrlC:
    """Where Ctrl-C goes during an interactive chat: the reply or the prompt read in flight."""

    def __init__(self) -> None:
        self.target: asyncio.Future[Any] | None = None
        self.pressed = False

    def __call__(self) -> None:
        self.pressed = True
        if self.target is not None:
            self.target.cancel()

    async def run(self, work: asyncio.Future[T]) -> T:
        """Await ``work`` with Ctrl-C cancelling it (only it); re-raise what it raised."""
        self.target, self.pressed = work, False
        try:
            await asyncio.wait([work])  # returns when it ends, however it ends
        finally:
            self.target = None
            if not work.done():  # we were cancelled ourselves: take the work down too
                work.cancel()
        return work.result()


async def _chat_interactive(
    conv: AsyncConversation, args: argparse.Namespace, attached: list[ImageBlock | DocumentBlock]
) -> int:
    where = " on the bundled emulator" if args.emulator else ""
    say(f"chatting with {conv.model_id}{where}; Ctrl-C stops a reply, Ctrl-D or Ctrl-C quits")
    out, failed = _Output(), 0
    ctrl_c = _CtrlC()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, ctrl_c)
    try:
        while True:
            print("> ", end="", file=sys.stderr, flush=True)
            try:
                line = await ctrl_c.run(asyncio.ensure_future(_read_line()))
            except asyncio.CancelledError:
                if not ctrl_c.pressed:
                    raise
                line = None  # Ctrl-C at the prompt
            if line is None:
                print(file=sys.stderr, flush=True)  # after "> " and the ^C or ^D: a fresh line
                return EXIT_FAILED if failed else 0
            if not line.strip():
                continue
            prompt, attached = _with(line.strip(), attached), []  # files go with the first
            try:
                await ctrl_c.run(asyncio.ensure_future(_turn(conv, prompt, out)))
            except Interrupted:
                say("reply cancelled; the conversation is unchanged")
            except (ChatError, CliError) as exc:
                say(f"error: {describe(exc) if isinstance(exc, ChatError) else exc}")
                failed += 1
    finally:
        loop.remove_signal_handler(signal.SIGINT)


async def _chat(args: argparse.Namespace) -> int:
    out = _Output()
    attached = await _attachments(args)
    async with open_conversation(args) as conv:
        if args.prompt is not None:
            await _turn(conv, _with(args.prompt, attached), out)
            return 0
        if sys.stdin.isatty():
            return await _chat_interactive(conv, args, attached)
        failed = 0
        while (line := await _read_line()) is not None:
            if not line.strip():
                continue
            prompt, attached = _with(line.strip(), attached), []  # files go with the first
            try:
                await _turn(conv, prompt, out)
            except Interrupted:
                raise
            except (ChatError, CliError) as exc:
                # The conversation is intact (a failed turn leaves no trace): carry on.
                say(f"error: {describe(exc) if isinstance(exc, ChatError) else exc}")
                failed += 1
        return EXIT_FAILED if failed else 0


def _check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.emulator and args.endpoint_url:
        parser.error("--emulator and --endpoint-url exclude each other")
    if not args.emulator and args.model is None:
        parser.error(f"--model is required (or --emulator, which defaults to {EMULATOR_MODEL})")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _check(parser, args)
    command = _chat if args.command == "chat" else run_fan_out
    try:
        check_region(args)
        return asyncio.run(command(args))
    except KeyboardInterrupt:
        # asyncio.run cancelled the command: every open stream and client is closed by now.
        say("interrupted")
        return EXIT_INTERRUPTED
    except Interrupted as exc:  # the command says what Ctrl-C left undone
        say("; ".join(filter(None, ["interrupted", str(exc)])))
        return exc.status
    except CliError as exc:
        say(f"error: {exc}")
        return exc.status
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): stop quietly, and let Python's exit flush
        # of stdout hit /dev/null instead of raising again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except Exception as exc:  # one line, never a traceback: ChatError and anything else
        say(f"error: {describe(exc)}")
        return EXIT_FAILED
