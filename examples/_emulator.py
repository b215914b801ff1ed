"""Shared by the examples: where the conversation talks to, the bundled emulator or Bedrock.

Every example accepts the same three ways to run:

- no arguments (or ``--emulator``): a FakeBedrock emulator is started in-process on
  127.0.0.1 and torn down at exit, so the example needs no AWS account and no network;
- ``--emulator-url URL``: an emulator already running elsewhere, e.g. one started with
  ``python -m aiostream_chat.testing --port 8000``;
- ``--model MODEL_ID [--region REGION]``: real Amazon Bedrock, with the credentials botocore
  finds the usual way (environment, ``~/.aws``, SSO, instance role).

The emulator paths use dummy credentials and turn off the EC2 instance-metadata lookup, so
botocore never goes looking for credentials on the network.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aioboto3
from aiobotocore.config import AioConfig

from aiostream_chat.testing import FakeBedrock, Script

EMULATOR_MODEL = "us.amazon.nova-micro-v1:0"
# The web examples' extra; the same command is in their docstrings and the README.
INSTALL_EXAMPLES = "pip install -e '.[examples]'"


def missing_extra(example: str, error: ImportError) -> str:
    """The one line a web example prints when a package of the 'examples' extra is missing."""
    package = (error.name or "").partition(".")[0]
    what = f"the {package!r} package" if package else "the web packages"
    return f"{example} needs {what}: {INSTALL_EXAMPLES}"


def add_bedrock_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --model, --region, --emulator and --emulator-url to an example's parser."""
    group = parser.add_argument_group("where to send requests (default: bundled emulator)")
    group.add_argument("--model", help="a Bedrock model or inference-profile ID: use real Bedrock")
    group.add_argument("--region", help="AWS region for real Bedrock (default: from AWS config)")
    group.add_argument(
        "--emulator",
        action="store_true",
        help="use the bundled emulator, started in-process (the default without --model)",
    )
    group.add_argument(
        "--emulator-url", metavar="URL", help="use an emulator already running at URL"
    )


@dataclass
class Bedrock:
    """What an example needs to open conversations: a model ID and the connection settings."""

    model_id: str
    session: aioboto3.Session
    endpoint_url: str | None = None
    region_name: str | None = None
    emulated: bool = False
    fake: FakeBedrock | None = field(default=None, repr=False)

    @property
    def connection(self) -> dict[str, Any]:
        """Keyword arguments for ``AsyncConversation`` (it then owns its own client)."""
        return {
            "session": self.session,
            "endpoint_url": self.endpoint_url,
            "region_name": self.region_name,
        }

    def client(self, max_connections: int = 50) -> Any:
        """An async context manager for one bedrock-runtime client to share process-wide.

        Conversations given ``client=`` never close it and leave its configuration alone, so
        switch botocore's own retries off here: aiostream_chat's RetryPolicy is the only one
        that should apply. Reads are bounded by the conversation's Timeouts instead.
        """
        config = AioConfig(
            max_pool_connections=max_connections,
            retries={"total_max_attempts": 1, "mode": "standard"},
            read_timeout=None,
            tcp_keepalive=True,
        )
        return self.session.client(
            "bedrock-runtime",
            endpoint_url=self.endpoint_url,
            region_name=self.region_name,
            config=config,
        )

    def script(self, *replies: Script) -> None:
        """Queue scripted replies when running on the in-process emulator (else do nothing)."""
        if self.fake is not None:
            self.fake.enqueue(*replies)


def _emulator_session() -> aioboto3.Session:
    # No credential search: nothing may leave 127.0.0.1 (instance metadata included).
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    return aioboto3.Session(
        aws_access_key_id="emulator",
        aws_secret_access_key="emulator",
        region_name="us-east-1",
    )


@asynccontextmanager
async def bedrock(args: argparse.Namespace, *, delay: float = 0.03) -> AsyncIterator[Bedrock]:
    """Yield where to send requests, starting (and finally stopping) an emulator if needed.

    ``delay`` is the emulator's pause between frames, so replies visibly stream.
    """
    if args.model is not None and not args.emulator and args.emulator_url is None:
        session = aioboto3.Session(region_name=args.region)
        yield Bedrock(args.model, session, region_name=args.region)
        return
    model_id = args.model or EMULATOR_MODEL
    if args.emulator_url is not None:
        yield Bedrock(model_id, _emulator_session(), args.emulator_url, emulated=True)
        return
    async with FakeBedrock(delay=delay) as fake:
        yield Bedrock(model_id, _emulator_session(), fake.endpoint_url, emulated=True, fake=fake)
