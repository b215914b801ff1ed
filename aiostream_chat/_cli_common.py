"""What the CLI's commands share: one-line errors, and opening a conversation from the options."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aioboto3

from ._conversation import AsyncConversation
from ._errors import ChatError
from ._models import InferenceConfig
from ._options import RequestOptions, Thinking, check_options

__all__ = [
    "EMULATOR_MODEL",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_USAGE",
    "PROG",
    "CliError",
    "Interrupted",
    "check_region",
    "describe",
    "open_conversation",
    "positive_int",
    "say",
]

PROG = "aiostream-chat"
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it
EMULATOR_MODEL = "us.amazon.nova-micro-v1:0"
_EMULATOR_DELAY = 0.02  # seconds between the emulator's frames, so replies visibly stream


class CliError(Exception):
    """A failure reported as one line on stderr, with the exit status to use."""

    def __init__(self, message: str, status: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.status = status


class Interrupted(CliError):
    """Ctrl-C stopped the command; the message says what was left undone (may be empty)."""

    def __init__(self, note: str = "") -> None:
        super().__init__(note, EXIT_INTERRUPTED)


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def say(message: str) -> None:
    """One line on stderr, prefixed with the program name."""
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


def describe(error: BaseException) -> str:
    """A one-line account of an error: its class, its message and, for turns, the context."""
    text = " ".join(str(error).split()) or "(no message)"
    line = f"{type(error).__name__}: {text}"
    if isinstance(error, ChatError):
        extra = []
        if error.attempts > 1:
            extra.append(f"after {error.attempts} attempts")
        if error.request_id:
            extra.append(f"request ID {error.request_id}")
        if extra:
            line += f" ({', '.join(extra)})"
    return line


def _inference(args: argparse.Namespace) -> InferenceConfig | None:
    if args.max_tokens is None and args.temperature is None:
        return None
    return InferenceConfig(max_tokens=args.max_tokens, temperature=args.temperature)


def check_region(args: argparse.Namespace) -> None:
    """Without ``--emulator``, a region must come from ``--region`` or the AWS configuration."""
    if args.emulator:
        return
    region = args.region if args.region is not None else aioboto3.Session().region_name
    if not (region or "").strip():
        raise CliError("no AWS region: pass --region (or set AWS_REGION)", EXIT_USAGE)


def _options(args: argparse.Namespace, model_id: str) -> RequestOptions | None:
    """``--thinking BUDGET`` as RequestOptions, checked for this model before any I/O."""
    if getattr(args, "thinking", None) is None:
        return None
    options = RequestOptions(thinking=Thinking(budget_tokens=args.thinking))
    try:
        check_options(
            options,
            model_id=model_id,
            tool_names=[],
            max_tokens=args.max_tokens,
            temperature=args.temperature,
        )
    except ValueError as exc:
        raise CliError(f"--thinking: {exc}", EXIT_USAGE) from None
    return options


@asynccontextmanager
async def open_conversation(args: argparse.Namespace) -> AsyncIterator[AsyncConversation]:
    """The conversation the options describe; with ``--emulator`` the emulator runs in-process."""
    model_id = args.model or EMULATOR_MODEL
    settings: dict[str, Any] = {
        "system": args.system,
        "inference": _inference(args),
        "options": _options(args, model_id),
        "api_key": getattr(args, "api_key", None) or None,
    }
    if not args.emulator:
        async with AsyncConversation(
            args.model, region_name=args.region or None, endpoint_url=args.endpoint_url, **settings
        ) as conv:
            yield conv
        return
    from .testing import FakeBedrock  # only the emulator needs aiohttp's server side

    # Dummy credentials and no instance-metadata lookup: nothing leaves 127.0.0.1.
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    session = aioboto3.Session(
        aws_access_key_id="emulator", aws_secret_access_key="emulator", region_name="us-east-1"
    )
    async with (
        FakeBedrock(delay=_EMULATOR_DELAY) as fake,
        AsyncConversation(
            args.model or EMULATOR_MODEL,
            session=session,
            endpoint_url=fake.endpoint_url,
            **settings,
        ) as conv,
    ):
        yield conv
