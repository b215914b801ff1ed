"""Shared fixtures and test data: a conversation factory wired to the `fake_bedrock` emulator."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aioboto3
import pytest
import pytest_asyncio

from aiostream_chat import (
    AsyncConversation,
    ConversationStore,
    Message,
    RedisStore,
    SQLiteStore,
)
from aiostream_chat.testing import FakeBedrock, no_backoff, set_backoff
from tests._redis import RedisServer, run_redis

# Never let botocore look for credentials off this machine (instance metadata).
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"

MODEL = "us.amazon.nova-micro-v1:0"
# One earlier exchange, so tests can see that a failed turn leaves history exactly as it was.
HISTORY = (Message.user("earlier question"), Message.assistant("earlier answer"))

MakeConv = Callable[..., AsyncConversation]


@pytest.fixture(autouse=True)
def _no_backoff() -> Iterator[None]:
    """Retries happen without sleeping; tests that pin backoff timing opt out explicitly."""
    with no_backoff():
        yield


@pytest.fixture
def real_backoff() -> Iterator[None]:
    """Undo the suite's no_backoff() for one test, so that backoff sleeps really happen."""
    with set_backoff(True):
        yield


def dummy_session() -> aioboto3.Session:
    """A session with dummy credentials: botocore signs requests, nothing leaves loopback."""
    return aioboto3.Session(
        aws_access_key_id="AKIDTEST", aws_secret_access_key="test-secret", region_name="us-east-1"
    )


@pytest.fixture
def session() -> aioboto3.Session:
    return dummy_session()


@pytest_asyncio.fixture
async def make_conv(
    fake_bedrock: FakeBedrock, session: aioboto3.Session
) -> AsyncIterator[MakeConv]:
    """Builds conversations against the emulator and closes them after the test."""
    made: list[AsyncConversation] = []

    def make(model_id: str = MODEL, **kwargs: Any) -> AsyncConversation:
        kwargs.setdefault("session", session)
        kwargs.setdefault("endpoint_url", fake_bedrock.endpoint_url)
        conv = AsyncConversation(model_id, **kwargs)
        made.append(conv)
        return conv

    yield make
    for conv in made:
        await conv.aclose()


@pytest_asyncio.fixture
async def conv(make_conv: MakeConv) -> AsyncConversation:
    return make_conv()


MakeStore = Callable[[], ConversationStore]


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server on a free loopback port, persistence off, for one test module."""
    yield from run_redis()


@pytest_asyncio.fixture(params=["sqlite", "redis"])
async def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MakeStore]:
    """Builds store objects on one shared database (like separate processes would)."""
    made: list[ConversationStore] = []
    prefix = f"t{uuid.uuid4().hex[:8]}"
    if request.param == "redis":
        url = request.getfixturevalue("redis_server").url

    def make() -> ConversationStore:
        store: ConversationStore
        if request.param == "sqlite":
            store = SQLiteStore(tmp_path / "conversations.db")
        else:
            store = RedisStore(url, prefix=prefix)
        made.append(store)
        return store

    yield make
    for store in made:
        await store.aclose()
