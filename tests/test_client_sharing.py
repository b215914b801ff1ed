"""Conversations opened the README's way (no client=, no session=) share one client per settings,
reference-counted; a missing region is a plain ValueError."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aioboto3
import pytest

from aiostream_chat import AsyncConversation
from aiostream_chat._client import shared_clients
from aiostream_chat.testing import FakeBedrock, reply

MODEL = "us.amazon.nova-micro-v1:0"


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Credentials from the environment only; no config file, no region unless a test sets it."""
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_BEARER_TOKEN_BEDROCK"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDTEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))


def _conv(fake: FakeBedrock, **kwargs: Any) -> AsyncConversation:
    return AsyncConversation(
        MODEL, region_name="us-east-1", endpoint_url=fake.endpoint_url, **kwargs
    )


async def test_default_conversations_share_one_client(fake_bedrock: FakeBedrock) -> None:
    """Three conversations with the same settings use one client; it stays open until the last
    of them closes, and each closing one leaves the others working."""
    convs = [_conv(fake_bedrock) for _ in range(3)]
    for conv in convs:
        await conv.__aenter__()
    clients = {id(conv._clients._client) for conv in convs}
    assert len(clients) == 1 and shared_clients.live() == 1
    await convs[0].aclose()
    assert (await convs[1].send("one")).text
    await convs[1].aclose()
    assert shared_clients.live() == 1
    assert (await convs[2].send("two")).text
    await convs[2].aclose()
    assert shared_clients.live() == 0
    await convs[2].aclose()  # idempotent, releases nothing twice
    assert shared_clients.live() == 0


async def test_closing_one_conversation_leaves_anothers_stream_running(
    fake_bedrock: FakeBedrock,
) -> None:
    """A stream of one conversation keeps streaming while another sharing its client closes."""
    fake_bedrock.enqueue(reply("a b c d", chunks=["a ", "b ", "c ", "d"], delay=0.02))
    first, second = _conv(fake_bedrock), _conv(fake_bedrock)
    async with first, second:
        texts = aiter(second.stream("go"))
        head = await anext(texts)
        await first.aclose()
        rest = [text async for text in texts]
    assert head + "".join(rest) == "a b c d"
    assert second.history[-1].text == "a b c d"


async def test_different_settings_get_different_clients(fake_bedrock: FakeBedrock) -> None:
    """Pool size and API key are part of what is shared: a different one gets its own client."""
    async with (
        _conv(fake_bedrock) as a,
        _conv(fake_bedrock, max_connections=7) as b,
        _conv(fake_bedrock, api_key="key-1") as c,
        _conv(fake_bedrock, api_key="key-2") as d,
        _conv(fake_bedrock, api_key="key-1") as e,
    ):
        ids = [id(x._clients._client) for x in (a, b, c, d, e)]
        assert len(set(ids[:4])) == 4
        assert ids[4] == ids[2]
        assert shared_clients.live() == 4
    assert shared_clients.live() == 0


async def test_a_session_opens_a_client_of_its_own(fake_bedrock: FakeBedrock) -> None:
    """A user-supplied session= is used as given: each conversation opens (and closes) its own."""
    session = aioboto3.Session(region_name="us-east-1")
    async with (
        AsyncConversation(MODEL, session=session, endpoint_url=fake_bedrock.endpoint_url) as a,
        AsyncConversation(MODEL, session=session, endpoint_url=fake_bedrock.endpoint_url) as b,
    ):
        assert a._clients._client is not b._clients._client
        assert shared_clients.live() == 0
        assert (await a.send("hi")).text


async def test_forks_of_a_shared_conversation_keep_it_alive(fake_bedrock: FakeBedrock) -> None:
    """Forks borrow their parent's client; closing a fork releases nothing."""
    async with _conv(fake_bedrock) as conv:
        fork = conv.fork()
        await fork.aclose()
        assert shared_clients.live() == 1
        assert (await conv.fork().send("still here")).text


@pytest.mark.parametrize("region", [None, "", "  "])
async def test_no_region_is_a_plain_value_error(
    fake_bedrock: FakeBedrock, region: str | None
) -> None:
    """No region anywhere (or an empty one) raises ValueError naming region_name= and AWS_REGION,
    never botocore's NoRegionError or "Invalid endpoint"; an empty one at construction."""
    if region is not None:
        with pytest.raises(ValueError, match=r"region_name=.*AWS_REGION"):
            AsyncConversation(MODEL, region_name=region)
        return
    conv = AsyncConversation(MODEL, endpoint_url=fake_bedrock.endpoint_url)
    with pytest.raises(ValueError, match=r"region_name=.*AWS_REGION") as info:
        await conv.send("hi")
    assert info.value.__cause__ is None
    assert not conv.busy and shared_clients.live() == 0
    await conv.aclose()
    assert fake_bedrock.requests == []


async def test_region_from_the_environment_is_enough(
    fake_bedrock: FakeBedrock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AWS_REGION alone gives the shared client its region."""
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    async with AsyncConversation(MODEL, endpoint_url=fake_bedrock.endpoint_url) as conv:
        assert conv._clients._client.meta.region_name == "eu-west-1"
        assert (await conv.send("hi")).text
