"""FakeBedrock driven by stock aioboto3: what botocore parses is what real Bedrock would send."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiobotocore.config import AioConfig
from botocore.eventstream import ChecksumMismatch
from botocore.exceptions import ClientError, EventStreamError, ReadTimeoutError

from aiostream_chat._codec import EventStreamDecoder
from aiostream_chat.testing import (
    FakeBedrock,
    Fault,
    ReceivedRequest,
    Script,
    ToolUse,
    load_recording,
    raw_events,
    recordings_dir,
    replay,
    reply,
)
from aiostream_chat.testing._script import play
from aiostream_chat.testing._wire import event_name

from .conftest import MODEL, dummy_session

HELLO = [{"role": "user", "content": [{"text": "Hello"}]}]
SESSION = dummy_session()

Event = dict[str, Any]


@pytest.fixture
async def fake() -> AsyncIterator[FakeBedrock]:
    async with FakeBedrock() as server:
        yield server


@asynccontextmanager
async def bedrock(fake: FakeBedrock, **config: Any) -> AsyncIterator[Any]:
    """A stock aioboto3 bedrock-runtime client pointed at the fake, botocore retries off."""
    aio_config = AioConfig(retries={"total_max_attempts": 1}, **config)
    async with SESSION.client(
        "bedrock-runtime", endpoint_url=fake.endpoint_url, config=aio_config
    ) as client:
        yield client


async def stream(fake: FakeBedrock, *scripts: Script, **kwargs: Any) -> list[Event]:
    """Enqueue scripts, make one ConverseStream call and read every event."""
    fake.enqueue(*scripts)
    events: list[Event] = []
    async with bedrock(fake) as client:
        kwargs.setdefault("messages", HELLO)
        response = await client.converse_stream(modelId=MODEL, **kwargs)
        try:
            async for event in response["stream"]:
                events.append(event)
        finally:
            response["stream"].close()
    return events


async def read_until_error(client: Any, events: list[Event]) -> None:
    """Read a stream into `events` until it ends or raises."""
    response = await client.converse_stream(modelId=MODEL, messages=HELLO)
    try:
        async for event in response["stream"]:
            events.append(event)
    finally:
        response["stream"].close()


def deltas(events: Sequence[Event]) -> list[dict[str, Any]]:
    return [e["contentBlockDelta"]["delta"] for e in events if "contentBlockDelta" in e]


def text_of(events: Sequence[Event]) -> str:
    return "".join(d.get("text", "") for d in deltas(events))


def only(events: Sequence[Event], kind: str) -> list[dict[str, Any]]:
    return [e[kind] for e in events if kind in e]


async def raw_post(
    fake: FakeBedrock, path: str, body: bytes = b"{}"
) -> tuple[int, dict[str, str], bytes]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(fake.endpoint_url + path, data=body) as response,
    ):
        return response.status, dict(response.headers), await response.read()


# --- every event kind of reply() ---


async def test_text_arrives_in_the_given_chunks(fake: FakeBedrock) -> None:
    """Text deltas come one per chunk, in one block 0 with no start event, then stop + metadata."""
    events = await stream(fake, reply(chunks=["Hel", "lo, ", "world"]))
    assert events[0] == {"messageStart": {"role": "assistant"}}
    assert deltas(events) == [{"text": "Hel"}, {"text": "lo, "}, {"text": "world"}]
    assert not only(events, "contentBlockStart")
    assert only(events, "contentBlockStop") == [{"contentBlockIndex": 0}]
    assert only(events, "messageStop") == [{"stopReason": "end_turn"}]
    assert list(events[-1]) == ["metadata"]


async def test_default_chunks_are_words_and_int_chunks_are_equal_pieces(fake: FakeBedrock) -> None:
    """chunks=None streams a word or two per delta; chunks=N streams N pieces; both rejoin."""
    text = "The capital of France is Paris, a city of light."
    by_words = deltas(await stream(fake, reply(text)))
    by_three = deltas(await stream(fake, reply(text, chunks=3)))
    assert "".join(d["text"] for d in by_words) == text
    assert 4 <= len(by_words) <= len(text.split())
    assert all(1 <= len(d["text"].split()) <= 2 for d in by_words)
    assert [len(d["text"]) for d in by_three] == [16, 16, 16]


async def test_empty_deltas_put_an_empty_text_delta_first(fake: FakeBedrock) -> None:
    """empty_deltas=True starts the text block with {"text": ""}, as Bedrock often does."""
    events = await stream(fake, reply("Hi", chunks=1, empty_deltas=True))
    assert deltas(events) == [{"text": ""}, {"text": "Hi"}]


async def test_reasoning_comes_first_with_its_signature(fake: FakeBedrock) -> None:
    """A reasoning block at index 0 streams text then one signature; the text block is index 1."""
    events = await stream(
        fake, reply("Answer.", reasoning="Let me think it over.", signature="c2ln")
    )
    reasoning = [
        e["contentBlockDelta"]["delta"]["reasoningContent"]
        for e in events
        if e.get("contentBlockDelta", {}).get("contentBlockIndex") == 0
    ]
    assert "".join(r.get("text", "") for r in reasoning) == "Let me think it over."
    assert reasoning[-1] == {"signature": "c2ln"}
    assert only(events, "contentBlockStop") == [{"contentBlockIndex": 0}, {"contentBlockIndex": 1}]
    text_deltas = [e for e in only(events, "contentBlockDelta") if "text" in e["delta"]]
    assert {d["contentBlockIndex"] for d in text_deltas} == {1}


async def test_redacted_reasoning_arrives_as_bytes(fake: FakeBedrock) -> None:
    """redactedContent is base64 on the wire and botocore hands back the original bytes."""
    events = await stream(fake, reply("Done.", redacted=b"\x00secret\xff"))
    assert deltas(events)[0] == {"reasoningContent": {"redactedContent": b"\x00secret\xff"}}


async def test_tool_use_input_fragments_rejoin_to_the_json(fake: FakeBedrock) -> None:
    """Each tool use gets a start event with id and name; its input JSON splits into `chunks`."""
    tools = [
        ToolUse(
            "get_weather", {"city": "Paris", "days": [1, 2]}, tool_use_id="tooluse_a", chunks=4
        ),
        ToolUse("get_time", {"zone": "CET"}),
    ]
    events = await stream(fake, reply("", tool_uses=tools))
    starts = only(events, "contentBlockStart")
    assert starts[0] == {
        "start": {"toolUse": {"toolUseId": "tooluse_a", "name": "get_weather"}},
        "contentBlockIndex": 0,
    }
    assert starts[1]["start"]["toolUse"]["toolUseId"].startswith("tooluse_")
    fragments: dict[int, list[str]] = {0: [], 1: []}
    for delta in only(events, "contentBlockDelta"):
        fragments[delta["contentBlockIndex"]].append(delta["delta"]["toolUse"]["input"])
    assert len(fragments[0]) == 4
    assert json.loads("".join(fragments[0])) == {"city": "Paris", "days": [1, 2]}
    assert json.loads("".join(fragments[1])) == {"zone": "CET"}
    assert only(events, "messageStop") == [{"stopReason": "tool_use"}]


async def test_citations_stream_in_the_text_block(fake: FakeBedrock) -> None:
    """Citations arrive as `citation` deltas of the text block, parsed by botocore's model."""
    citation = {
        "title": "Atlas",
        "sourceContent": [{"text": "Paris is the capital."}],
        "location": {"documentChar": {"documentIndex": 0, "start": 0, "end": 21}},
    }
    events = await stream(fake, reply("Paris.", chunks=1, citations=[citation]))
    assert deltas(events) == [{"text": "Paris."}, {"citation": citation}]


async def test_metadata_and_explicit_stop_reason(fake: FakeBedrock) -> None:
    """usage, latency, trace and stop_reason arrive exactly as scripted."""
    usage = {"inputTokens": 7, "outputTokens": 3, "totalTokens": 10}
    trace = {"guardrail": {"modelOutput": ["blocked"]}}
    events = await stream(
        fake, reply("Cut", stop_reason="max_tokens", usage=usage, latency_ms=1234, trace=trace)
    )
    assert only(events, "messageStop") == [{"stopReason": "max_tokens"}]
    meta = only(events, "metadata")[0]
    assert meta["usage"] == usage
    assert meta["metrics"] == {"latencyMs": 1234}
    assert meta["trace"] == trace


async def test_default_usage_is_consistent(fake: FakeBedrock) -> None:
    """Without usage=, the counts are positive and add up."""
    usage = only(await stream(fake, reply("A few words of text.")), "metadata")[0]["usage"]
    assert usage["outputTokens"] > 0
    assert usage["totalTokens"] == usage["inputTokens"] + usage["outputTokens"]


async def test_raw_events_pass_unknown_kinds_that_botocore_drops(fake: FakeBedrock) -> None:
    """raw_events sends the given frames; botocore silently drops an unknown :event-type."""
    script = raw_events(
        [
            ("messageStart", {"role": "assistant"}),
            ("somethingNew", {"x": 1}),
            ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "ok"}}),
            ("messageStop", {"stopReason": "end_turn"}),
        ]
    )
    events = await stream(fake, script)
    assert [next(iter(e)) for e in events] == ["messageStart", "contentBlockDelta", "messageStop"]


async def test_every_payload_is_padded(fake: FakeBedrock) -> None:
    """Each event payload carries a "p" field of 1..60 letters and digits, like real Bedrock."""
    fake.enqueue(reply("one two three"))
    status, headers, body = await raw_post(fake, "/model/m/converse-stream")
    assert status == 200
    assert headers["Content-Type"] == "application/vnd.amazon.eventstream"
    assert headers["x-amzn-RequestId"]
    frames = EventStreamDecoder().feed(body)
    assert frames
    for frame in frames:
        assert frame.headers[":message-type"] == "event"
        assert frame.headers[":content-type"] == "application/json"
        padding = json.loads(frame.payload)["p"]
        assert 1 <= len(padding) <= 60 and padding.isalnum()


# --- what the server received ---


@pytest.mark.parametrize(
    "model_id",
    [
        "us.amazon.nova-micro-v1:0",
        "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-v2:1",
    ],
)
async def test_model_id_is_percent_decoded(fake: FakeBedrock, model_id: str) -> None:
    """botocore percent-encodes ':' and '/' in the model id; requests[] holds it decoded."""
    async with bedrock(fake) as client:
        response = await client.converse_stream(modelId=model_id, messages=HELLO)
        async for _ in response["stream"]:
            pass
    request = fake.requests[0]
    assert request.model_id == model_id
    assert request.operation == "converse-stream"
    assert "%3A" in request.path and request.path.endswith("/converse-stream")
    if "/" in model_id:
        assert "%2F" in request.path


async def test_request_body_is_recorded(fake: FakeBedrock) -> None:
    """messages, system and inferenceConfig arrive as sent; prompt_text is the last user text."""
    messages = [
        {"role": "user", "content": [{"text": "First"}]},
        {"role": "assistant", "content": [{"text": "Reply"}]},
        {"role": "user", "content": [{"text": "Second"}]},
    ]
    system = [{"text": "Be brief."}]
    await stream(
        fake,
        reply(),
        messages=messages,
        system=system,
        inferenceConfig={"maxTokens": 50, "temperature": 0.2},
    )
    request = fake.requests[0]
    assert isinstance(request, ReceivedRequest)
    assert request.body["messages"] == messages
    assert request.body["system"] == system
    assert request.body["inferenceConfig"] == {"maxTokens": 50, "temperature": 0.2}
    assert request.prompt_text == "Second"
    assert request.headers["Authorization"].startswith("AWS4-HMAC-SHA256")


# --- faults ---

HTTP_CODES = {
    400: "ValidationException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    408: "ModelTimeoutException",
    424: "ModelErrorException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
}


@pytest.mark.parametrize(("status", "code"), HTTP_CODES.items())
async def test_http_fault_raises_the_modeled_error(
    fake: FakeBedrock, status: int, code: str
) -> None:
    """An http fault answers before the stream; botocore names the modeled error and status."""
    fake.enqueue(reply(fault=Fault.http(status, message="scripted failure")))
    async with bedrock(fake) as client:
        with pytest.raises(ClientError) as caught:
            await client.converse_stream(modelId=MODEL, messages=HELLO)
    error = caught.value.response
    assert error["Error"]["Code"] == code
    assert error["Error"]["Message"] == "scripted failure"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == status
    assert error["ResponseMetadata"]["RequestId"]


async def test_http_fault_with_explicit_code(fake: FakeBedrock) -> None:
    """Fault.http(code=...) overrides the code derived from the status."""
    fake.enqueue(reply(fault=Fault.http(429, "ModelNotReadyException")))
    async with bedrock(fake) as client:
        with pytest.raises(ClientError) as caught:
            await client.converse_stream(modelId=MODEL, messages=HELLO)
    assert caught.value.response["Error"]["Code"] == "ModelNotReadyException"


@pytest.mark.parametrize(
    "name",
    [
        "throttlingException",
        "modelStreamErrorException",
        "validationException",
        "serviceUnavailableException",
        "internalServerException",
    ],
)
async def test_in_stream_exception_after_some_text(fake: FakeBedrock, name: str) -> None:
    """An exception frame after `after` deltas raises EventStreamError with that code."""
    fake.enqueue(
        reply(
            "a b c d", chunks=["a ", "b ", "c ", "d"], fault=Fault.exception(name, "boom", after=2)
        )
    )
    events: list[Event] = []
    async with bedrock(fake) as client:
        with pytest.raises(EventStreamError) as caught:
            await read_until_error(client, events)
    assert text_of(events) == "a b "
    assert caught.value.response["Error"] == {"Code": name, "Message": "boom"}


async def test_error_message_type(fake: FakeBedrock) -> None:
    """A `:message-type: error` frame raises EventStreamError with its :error-code."""
    fake.enqueue(reply(fault=Fault.error("InternalFailure", "went wrong")))
    events: list[Event] = []
    async with bedrock(fake) as client:
        with pytest.raises(EventStreamError) as caught:
            await read_until_error(client, events)
    assert caught.value.response["Error"]["Code"] == "InternalFailure"
    assert caught.value.response["Error"]["Message"] == "went wrong"
    assert text_of(events) == ""


async def test_fault_after_the_last_delta_fires_before_message_stop(fake: FakeBedrock) -> None:
    """`after` beyond the delta count fires just before messageStop: all text, no stop."""
    fake.enqueue(reply("x y", chunks=2, fault=Fault.exception("throttlingException", after=99)))
    events: list[Event] = []
    async with bedrock(fake) as client:
        with pytest.raises(EventStreamError):
            await read_until_error(client, events)
    assert text_of(events) == "x y"
    assert only(events, "contentBlockStop") and not only(events, "messageStop")


async def test_stall_mid_stream_raises_a_raw_socket_timeout(fake: FakeBedrock) -> None:
    """A stall longer than read_timeout surfaces as aiohttp's timeout, not a botocore error."""
    fake.enqueue(reply(chunks=["one", " two"], fault=Fault.stall(2.0, after=1)))
    events: list[Event] = []
    async with bedrock(fake, read_timeout=0.3) as client:
        with pytest.raises(aiohttp.ServerTimeoutError):
            await read_until_error(client, events)
    assert text_of(events) == "one"


async def test_short_stall_then_the_reply_continues(fake: FakeBedrock) -> None:
    """After a stall the reply carries on to the end."""
    started = time.monotonic()
    events = await stream(fake, reply(chunks=["one", " two"], fault=Fault.stall(0.3, after=1)))
    assert time.monotonic() - started >= 0.3
    assert text_of(events) == "one two"
    assert only(events, "messageStop")


@pytest.mark.parametrize("fault", [Fault.eof(after=1), Fault.half_frame(after=1)])
async def test_eof_and_half_frame_end_iteration_silently(fake: FakeBedrock, fault: Fault) -> None:
    """A clean end of body, even mid-frame, ends botocore's iteration without messageStop."""
    events = await stream(fake, reply(chunks=["one ", "two ", "three"], fault=fault))
    assert text_of(events) == "one "
    assert not only(events, "messageStop")


async def test_reset_raises_an_aiohttp_connection_error(fake: FakeBedrock) -> None:
    """A TCP reset mid-stream raises aiohttp's payload/connection error through botocore."""
    fake.enqueue(reply(chunks=["one ", "two ", "three"], fault=Fault.reset(after=1)))
    events: list[Event] = []
    async with bedrock(fake) as client:
        with pytest.raises((aiohttp.ClientPayloadError, aiohttp.ClientConnectionError)):
            await read_until_error(client, events)
    assert text_of(events) == "one "
    (gone,) = await fake.wait_for_disconnects(1)
    assert not gone.completed


async def test_corrupt_crc_raises_checksum_mismatch(fake: FakeBedrock) -> None:
    """A frame with a wrong message CRC makes botocore raise ChecksumMismatch."""
    fake.enqueue(reply(chunks=["one", " two"], fault=Fault.corrupt_crc(after=1)))
    events: list[Event] = []
    async with bedrock(fake) as client:
        with pytest.raises(ChecksumMismatch):
            await read_until_error(client, events)
    assert text_of(events) == "one"


async def test_header_delay_holds_back_the_response(fake: FakeBedrock) -> None:
    """header_delay delays the status line: a shorter read_timeout times out before the stream."""
    fake.enqueue(reply(header_delay=0.3), reply(header_delay=1.0))
    async with bedrock(fake, read_timeout=0.5) as client:
        started = time.monotonic()
        response = await client.converse_stream(modelId=MODEL, messages=HELLO)
        assert time.monotonic() - started >= 0.3
        async for _ in response["stream"]:
            pass
        with pytest.raises(ReadTimeoutError):
            await client.converse_stream(modelId=MODEL, messages=HELLO)


async def test_converse_answers_the_same_script_as_json(fake: FakeBedrock) -> None:
    """POST /converse turns a script into Converse's output.message, stopReason, usage, metrics."""
    tool = ToolUse("lookup", {"q": "x"}, tool_use_id="tooluse_1")
    fake.enqueue(
        reply("Let me check.", reasoning="hmm", signature="sig", tool_uses=[tool]),
        reply(fault=Fault.http(503)),
    )
    async with bedrock(fake) as client:
        answer = await client.converse(modelId=MODEL, messages=HELLO)
        with pytest.raises(ClientError) as caught:
            await client.converse(modelId=MODEL, messages=HELLO)
    assert answer["output"]["message"]["content"] == [
        {"reasoningContent": {"reasoningText": {"text": "hmm", "signature": "sig"}}},
        {"text": "Let me check."},
        {"toolUse": {"toolUseId": "tooluse_1", "name": "lookup", "input": {"q": "x"}}},
    ]
    assert answer["stopReason"] == "tool_use"
    assert answer["metrics"] == {"latencyMs": 42}
    assert caught.value.response["Error"]["Code"] == "ServiceUnavailableException"
    assert [r.operation for r in fake.requests] == ["converse", "converse"]


async def test_unknown_path_is_a_json_404(fake: FakeBedrock) -> None:
    """Anything but POST /model/{id}/converse[-stream] is a JSON 404 and is not recorded."""
    status, _, body = await raw_post(fake, "/model/m/invoke")
    assert status == 404
    assert "message" in json.loads(body)
    assert fake.requests == []


# --- recordings ---


def _recording_names(status: int) -> list[str]:
    try:
        folder = recordings_dir()
    except FileNotFoundError:
        return []
    return sorted(
        p.stem for p in folder.glob("*.json") if json.loads(p.read_text())["status"] == status
    )


@pytest.mark.parametrize("name", _recording_names(200))
async def test_replay_reproduces_the_recorded_reply(fake: FakeBedrock, name: str) -> None:
    """Replaying a real recording through aioboto3 rebuilds its text and stop reason."""
    recording = load_recording(name)
    events = await stream(fake, replay(name))
    assert text_of(events) == recording["expected"]["text"]
    assert only(events, "messageStop")[0]["stopReason"] == recording["expected"]["stop_reason"]


@pytest.mark.parametrize("name", _recording_names(200))
async def test_replay_is_byte_for_byte(fake: FakeBedrock, name: str) -> None:
    """The replayed body equals the recorded bytes, even when paced frame by frame."""
    recording = load_recording(name)
    fake.enqueue(replay(recording, delay=0.001))
    status, headers, body = await raw_post(fake, "/model/m/converse-stream")
    assert status == 200
    assert headers["Content-Type"] == recording["response_headers"]["content-type"]
    assert body == base64.b64decode(recording["body_base64"])
    (done,) = await fake.wait_for_disconnects(1)
    assert done.completed and done.frames_sent == len(EventStreamDecoder().feed(body))


async def test_replay_of_an_error_recording_raises_its_error(fake: FakeBedrock) -> None:
    """The 400 recording raises a ValidationException carrying the recorded message."""
    (name,) = _recording_names(400)
    message = load_recording(name)["expected"]["error_body"]["message"]
    fake.enqueue(replay(name))
    async with bedrock(fake) as client:
        with pytest.raises(ClientError) as caught:
            await client.converse_stream(modelId=MODEL, messages=HELLO)
    assert caught.value.response["Error"] == {"Code": "ValidationException", "Message": message}
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_recordings_dir_honours_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """$AIOSTREAM_CHAT_RECORDINGS wins; a missing recording names the folder searched."""
    monkeypatch.setenv("AIOSTREAM_CHAT_RECORDINGS", str(tmp_path))
    assert recordings_dir() == tmp_path
    (tmp_path / "mine.json").write_text('{"status": 200}')
    assert load_recording("mine") == {"status": 200}
    with pytest.raises(FileNotFoundError, match="nova_text"):
        load_recording("nova_text")


# --- concurrency and disconnects ---


async def test_max_concurrent_streams_throttles_the_extra_stream() -> None:
    """With the quota reached, one more ConverseStream is answered 429 ThrottlingException."""
    async with FakeBedrock(max_concurrent_streams=1) as fake, bedrock(fake) as client:
        fake.enqueue(reply("slow reply here", chunks=3, delay=0.3), reply("fast"))
        first = await client.converse_stream(modelId=MODEL, messages=HELLO)
        try:
            assert fake.open_streams == 1
            with pytest.raises(ClientError) as caught:
                await client.converse_stream(modelId=MODEL, messages=HELLO)
            assert caught.value.response["Error"]["Code"] == "ThrottlingException"
            assert fake.throttled == 1
        finally:
            first["stream"].close()
        await fake.wait_for_disconnects(2)
        assert fake.open_streams == 0
        # The throttled request did not use up the queued script.
        assert text_of(await _read(client)) == "fast"
        assert fake.max_open_streams == 1


async def _read(client: Any) -> list[Event]:
    events: list[Event] = []
    await read_until_error(client, events)
    return events


async def test_closing_the_stream_is_noticed_promptly(fake: FakeBedrock) -> None:
    """Closing a half-read stream while the server idles in a delay records completed=False."""
    fake.enqueue(reply("one two three four", chunks=4, delay=0.5))
    async with bedrock(fake) as client:
        response = await client.converse_stream(modelId=MODEL, messages=HELLO)
        async for _ in response["stream"]:
            break
        response["stream"].close()
        (gone,) = await fake.wait_for_disconnects(1, timeout=0.5)
    assert gone.request_index == 0
    assert not gone.completed
    assert gone.frames_sent == 1
    assert fake.open_streams == 0


async def test_a_full_read_records_a_completed_response(fake: FakeBedrock) -> None:
    """A response written to the end records completed=True with every frame counted."""
    events = await stream(fake, reply("a b", chunks=2))
    (done,) = await fake.wait_for_disconnects(1)
    assert done.completed
    assert done.frames_sent == len(events)


async def test_leaving_during_a_stall_is_noticed(fake: FakeBedrock) -> None:
    """A client that leaves while the server stalls mid-stream is recorded within the timeout."""
    fake.enqueue(reply(chunks=["one", " two"], fault=Fault.stall(5.0, after=1)))
    async with bedrock(fake, read_timeout=0.2) as client:
        with pytest.raises(aiohttp.ServerTimeoutError):
            await _read(client)
        (gone,) = await fake.wait_for_disconnects(1, timeout=0.5)
    assert not gone.completed


async def test_cancelling_during_header_delay_is_noticed(fake: FakeBedrock) -> None:
    """Cancelling a call still waiting for headers closes the connection, recorded as cut short."""
    arrived = asyncio.Event()

    def slow(request: ReceivedRequest) -> Script:
        arrived.set()
        return reply(header_delay=5.0)

    fake.responder = slow
    async with bedrock(fake) as client:
        call = asyncio.create_task(client.converse_stream(modelId=MODEL, messages=HELLO))
        await asyncio.wait_for(arrived.wait(), 5)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        (gone,) = await fake.wait_for_disconnects(1, timeout=0.5)
    assert not gone.completed and gone.frames_sent == 0


async def test_wait_for_disconnects_times_out(fake: FakeBedrock) -> None:
    """wait_for_disconnects raises TimeoutError when too few responses ended."""
    with pytest.raises(TimeoutError):
        await fake.wait_for_disconnects(1, timeout=0.05)


async def test_aclose_cuts_off_open_streams() -> None:
    """aclose() closes connections mid-response; the client sees an error; aclose is idempotent."""
    fake = FakeBedrock()
    await fake.start()
    fake.enqueue(reply(chunks=["one ", "two ", "three"], delay=5.0))
    first = asyncio.Event()

    async def read(client: Any) -> None:
        response = await client.converse_stream(modelId=MODEL, messages=HELLO)
        try:
            async for _ in response["stream"]:
                first.set()
        finally:
            response["stream"].close()

    async with bedrock(fake) as client:
        reading = asyncio.create_task(read(client))
        await asyncio.wait_for(first.wait(), 5)
        await fake.aclose()
        with pytest.raises(aiohttp.ClientError):
            await reading
    await fake.aclose()
    assert [d.completed for d in fake.disconnects] == [False]
    assert asyncio.all_tasks() == {asyncio.current_task()}


# --- scripting ---


async def test_enqueue_is_fifo_and_times_repeats_each(fake: FakeBedrock) -> None:
    """Queued scripts answer requests in order; times=2 repeats each script; then the responder."""
    fake.enqueue(reply("A"), reply("B"), times=2)
    fake.enqueue(reply("C"))
    async with bedrock(fake) as client:
        texts = [text_of(await _read(client)) for _ in range(6)]
    assert texts[:5] == ["A", "A", "B", "B", "C"]
    assert texts[5].startswith("You asked about Hello.")


async def test_default_responder_is_deterministic(fake: FakeBedrock) -> None:
    """The default reply depends only on the prompt and spans several sentences."""

    async def ask(prompt: str) -> str:
        messages = [{"role": "user", "content": [{"text": prompt}]}]
        return text_of(await stream(fake, messages=messages))

    first, again, other = await ask("the weather"), await ask("the weather"), await ask("tides")
    assert first == again != other
    assert first.startswith("You asked about the weather.")
    assert first.count(". ") >= 2


async def test_custom_responder(fake: FakeBedrock) -> None:
    """The responder sees the received request when the queue is empty."""
    fake.responder = lambda request: reply(f"echo: {request.prompt_text}")
    assert text_of(await stream(fake)) == "echo: Hello"


async def test_reset_forgets_everything(fake: FakeBedrock) -> None:
    """reset() clears the queue, the logs and the counters."""
    await stream(fake, reply("x"))
    fake.enqueue(reply("queued"))
    fake.reset()
    assert (fake.requests, fake.disconnects, fake.throttled) == ([], [], 0)
    assert text_of(await stream(fake)) != "queued"
    assert fake.requests[0].index == 0


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "example.com", "::"])
def test_non_loopback_hosts_are_refused(host: str) -> None:
    """FakeBedrock never listens beyond the machine."""
    with pytest.raises(ValueError, match="loopback"):
        FakeBedrock(host=host)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.5"])
def test_loopback_hosts_are_accepted(host: str) -> None:
    """Any loopback address (or localhost) is fine."""
    FakeBedrock(host=host)


async def test_fake_bedrock_fixture(fake_bedrock: FakeBedrock) -> None:
    """The pytest plugin's fixture yields a started server."""
    assert fake_bedrock.endpoint_url == f"http://127.0.0.1:{fake_bedrock.port}"
    assert text_of(await stream(fake_bedrock, reply("from the fixture"))) == "from the fixture"


async def test_standalone_server_smoke() -> None:
    """`python -m aiostream_chat.testing` prints its URL and answers ConverseStream."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aiostream_chat.testing",
        "--port",
        "0",
        "--delay",
        "0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    )
    try:
        assert process.stdout is not None
        url = (await asyncio.wait_for(process.stdout.readline(), 10)).decode().strip()
        assert url.startswith("http://127.0.0.1:")
        events: list[Event] = []
        async with SESSION.client(
            "bedrock-runtime", endpoint_url=url, config=AioConfig(retries={"total_max_attempts": 1})
        ) as client:
            await read_until_error(client, events)
        assert text_of(events).startswith("You asked about Hello.")
    finally:
        process.terminate()
        _, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()


async def test_standalone_server_refuses_public_hosts() -> None:
    """The command line refuses a non-loopback --host."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aiostream_chat.testing",
        "--host",
        "0.0.0.0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await process.communicate()
    assert process.returncode == 2
    assert b"loopback" in stderr


async def test_assert_all_closed_fails_while_a_response_is_open(fake: FakeBedrock) -> None:
    """assert_all_closed() raises AssertionError while a response is still being written, and
    returns one disconnect per request once the client closed it."""
    fake.enqueue(reply("one two three four", chunks=4, delay=0.5))
    async with bedrock(fake) as client:
        response = await client.converse_stream(modelId=MODEL, messages=HELLO)
        async for _ in response["stream"]:
            break
        with pytest.raises(AssertionError, match="left open"):
            await fake.assert_all_closed(1, timeout=0.05)
        response["stream"].close()
        (gone,) = await fake.assert_all_closed(1)
    assert not gone.completed
    with pytest.raises(AssertionError, match="1 requests, not 2"):
        await fake.assert_all_closed(2)


async def test_play_writes_frames_then_the_fault_once() -> None:
    """play(), shared by FakeBedrock and RespxBedrock, paces the frames and ends the body with
    the fault's bytes at the delta the fault names."""
    script = reply("a b c", chunks=3, fault=Fault.exception("throttlingException", after=2))
    chunks = [chunk async for chunk in play(script, random.Random(0))]
    names = [event_name(chunk.data) for chunk in chunks[:-1]]
    assert names == ["messageStart", "contentBlockDelta", "contentBlockDelta"]
    assert all(chunk.fault is None for chunk in chunks[:-1])
    last = chunks[-1]
    assert last.fault is script.fault
    (frame,) = EventStreamDecoder().feed(last.data)
    assert frame.headers[":exception-type"] == "throttlingException"


def test_wire_and_script_do_not_import_each_other() -> None:
    """Fault timing lives on Fault: the wire module no longer imports the script module."""
    import inspect

    from aiostream_chat.testing import _wire

    assert "_script" not in inspect.getsource(_wire)
