"""Media blocks: construction checks, from_path, wire shapes, exact bytes round trips."""

from __future__ import annotations

import base64
import json
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest

from aiostream_chat import (
    AsyncConversation,
    CachePoint,
    ConversationState,
    DocumentBlock,
    GuardContent,
    ImageBlock,
    Message,
    RawBlock,
    ReasoningBlock,
    S3Location,
    TextBlock,
    ToolResultBlock,
    ToolUseBlock,
    VideoBlock,
)
from aiostream_chat._models import block_from_bedrock
from aiostream_chat.testing import FakeBedrock, load_recording, replay, reply


def make_png(width: int = 3, height: int = 2) -> bytes:
    """A real PNG file (RGB, filter 0 rows) that image viewers open."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    rows = b"".join(
        b"\x00" + bytes((x * 90, y * 120, 250)) * 1 for y in range(height) for x in range(width)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


# A minimal real PDF; its binary comment line holds bytes that base64 to '+' and '/'.
PDF = (
    b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\xfb\xff\xbf\n"
    b"1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
    b"2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
    b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 72 72]>>endobj\n"
    b"trailer<</Root 1 0 R>>\n%%EOF\n"
)
PNG = make_png()
SLASHES = b"\xfb\xff\xbf\xfe"  # standard base64 "+/+/", URL-safe "-_-_"


def test_png_and_pdf_fixtures_are_real_files() -> None:
    """The fixtures are what their names say (so the round-trip tests use real media)."""
    assert PNG.startswith(b"\x89PNG\r\n\x1a\n") and PNG.endswith(b"IEND\xaeB`\x82")
    assert PDF.startswith(b"%PDF-") and PDF.rstrip().endswith(b"%%EOF")
    assert b"+" in base64.b64encode(PDF) or b"/" in base64.b64encode(PDF)


def test_blocks_map_to_bedrock_shapes() -> None:
    """Each new block's to_bedrock() is the Converse shape Bedrock documents."""
    s3 = S3Location("s3://my-bucket/cat.png", bucket_owner="123456789012")
    assert ImageBlock("png", PNG).to_bedrock() == {
        "image": {"format": "png", "source": {"bytes": PNG}}
    }
    assert ImageBlock("jpeg", s3).to_bedrock() == {
        "image": {
            "format": "jpeg",
            "source": {
                "s3Location": {"uri": "s3://my-bucket/cat.png", "bucketOwner": "123456789012"}
            },
        }
    }
    assert DocumentBlock("pdf", "Q3 report", PDF, citations=True).to_bedrock() == {
        "document": {
            "format": "pdf",
            "name": "Q3 report",
            "source": {"bytes": PDF},
            "citations": {"enabled": True},
        }
    }
    assert VideoBlock("mp4", S3Location("s3://bkt/v.mp4")).to_bedrock() == {
        "video": {"format": "mp4", "source": {"s3Location": {"uri": "s3://bkt/v.mp4"}}}
    }
    assert CachePoint().to_bedrock() == {"cachePoint": {"type": "default"}}
    assert CachePoint(ttl="1h").to_bedrock() == {"cachePoint": {"type": "default", "ttl": "1h"}}
    assert GuardContent("check me", ("query",)).to_bedrock() == {
        "guardContent": {"text": {"text": "check me", "qualifiers": ["query"]}}
    }
    assert [b.type for b in (ImageBlock("png", PNG), CachePoint(), GuardContent("x"))] == [
        "image",
        "cache_point",
        "guard_content",
    ]


@pytest.mark.parametrize(
    ("build", "words"),
    [
        (lambda: ImageBlock("bmp", PNG), "format"),
        (lambda: ImageBlock("png", b""), "no bytes"),
        (lambda: ImageBlock("png", b"x" * (int(3.75 * 1024 * 1024) + 1)), "at most"),
        (lambda: DocumentBlock("pdf", "bad_name.pdf", PDF), "name"),
        (lambda: DocumentBlock("pdf", "two  spaces", PDF), "name"),
        (lambda: DocumentBlock("exe", "ok", PDF), "format"),
        (lambda: DocumentBlock("pdf", "big", b"x" * (int(4.5 * 1024 * 1024) + 1)), "at most"),
        (lambda: VideoBlock("avi", b"x"), "format"),
        (lambda: S3Location("https://bucket/key"), "s3://"),
        (lambda: S3Location("s3://bucket/key", bucket_owner="me"), "12-digit"),
        (lambda: CachePoint(ttl="2h"), "ttl"),
        (lambda: GuardContent("x", ("everything",)), "qualifiers"),
    ],
)
def test_bad_blocks_fail_at_construction_with_one_plain_sentence(build: Any, words: str) -> None:
    """Formats, sizes, names and URIs Bedrock documents are checked when the block is built."""
    with pytest.raises(ValueError, match=words) as caught:
        build()
    message = str(caught.value)
    assert "\n" not in message and "errors.pydantic.dev" not in message


def test_wrong_source_type_is_a_type_error() -> None:
    """A source that is neither bytes nor an S3Location raises TypeError."""
    with pytest.raises(TypeError, match=r"ImageBlock\.source"):
        ImageBlock("png", 42)


async def test_from_path_infers_format_and_name(tmp_path: Path) -> None:
    """from_path() is awaited, reads the file off the loop and infers format (and a valid name)."""
    (tmp_path / "photo.JPG").write_bytes(PNG)
    (tmp_path / "annual_report 2024.pdf").write_bytes(PDF)
    (tmp_path / "clip.3gp").write_bytes(b"\x00\x00\x00\x18ftyp3gp4")
    image = await ImageBlock.from_path(tmp_path / "photo.JPG")
    assert (image.format, image.source) == ("jpeg", PNG)
    doc = await DocumentBlock.from_path(str(tmp_path / "annual_report 2024.pdf"), citations=True)
    assert (doc.format, doc.name, doc.source, doc.citations) == (
        "pdf",
        "annual-report 2024",
        PDF,
        True,
    )
    video = await VideoBlock.from_path(tmp_path / "clip.3gp")
    assert video.format == "three_gp"
    named = await DocumentBlock.from_path(tmp_path / "annual_report 2024.pdf", name="Report")
    assert named.name == "Report"


async def test_from_path_rejects_unknown_suffix_and_oversized_files(tmp_path: Path) -> None:
    """An unknown suffix or a file over Bedrock's inline limit is a ValueError."""
    (tmp_path / "notes.rtf").write_bytes(b"{\\rtf1}")
    with pytest.raises(ValueError, match="cannot tell the document format"):
        await DocumentBlock.from_path(tmp_path / "notes.rtf")
    big = tmp_path / "big.png"
    big.write_bytes(b"\x00" * (4 * 1024 * 1024))
    with pytest.raises(ValueError, match="at most"):
        await ImageBlock.from_path(big)


def test_blocks_from_bedrock_are_typed_and_unknown_ones_stay_raw() -> None:
    """Bedrock dicts of known kinds become typed blocks (bytes decoded); others stay RawBlock."""
    wire = {"image": {"format": "png", "source": {"bytes": base64.b64encode(PNG).decode()}}}
    assert block_from_bedrock(wire) == ImageBlock("png", PNG)
    for block in (
        DocumentBlock("pdf", "Doc (1)", PDF, citations=True),
        VideoBlock("webm", S3Location("s3://bucket/v.webm")),
        CachePoint(ttl="5m"),
        GuardContent("g", ("grounding_source", "query")),
    ):
        assert block_from_bedrock(block.to_bedrock()) == block
    unknown = {"searchResult": {"source": "x", "title": "t", "content": [{"text": "a"}]}}
    assert block_from_bedrock(unknown) == RawBlock(unknown)
    odd = {"image": {"format": "tiff", "source": {"bytes": "AA=="}}}
    assert block_from_bedrock(odd) == RawBlock(odd)


def test_cited_text_goes_back_as_citations_content() -> None:
    """A TextBlock with citations is sent as citationsContent and read back as the same block."""
    citation = {"title": "Doc", "sourceContent": [{"text": "src"}], "location": {}}
    block = TextBlock("The sky is blue.", citations=(citation,))
    wire = block.to_bedrock()
    assert wire == {
        "citationsContent": {"content": [{"text": "The sky is blue."}], "citations": [citation]}
    }
    assert block_from_bedrock(wire) == block
    assert TextBlock("plain").to_bedrock() == {"text": "plain"}


def test_tool_result_content_accepts_every_kind() -> None:
    """ToolResultBlock.content takes str, TextBlock, media blocks, JSON dicts, Bedrock entries."""
    image = ImageBlock("png", PNG)
    doc = DocumentBlock("txt", "notes", b"hello")
    video = VideoBlock("mp4", S3Location("s3://bucket/v.mp4"))
    result = ToolResultBlock(
        "tu-1",
        ["plain", TextBlock("typed"), image, doc, video, {"temp": 21}, {"json": {"a": 1}}],
        "success",
    )
    assert result.to_bedrock()["toolResult"]["content"] == [
        {"text": "plain"},
        {"text": "typed"},
        image.to_bedrock(),
        doc.to_bedrock(),
        video.to_bedrock(),
        {"json": {"temp": 21}},
        {"json": {"a": 1}},
    ]
    from_wire = block_from_bedrock(
        {"toolResult": {"toolUseId": "t", "content": [image.to_bedrock()], "status": "error"}}
    )
    assert isinstance(from_wire, ToolResultBlock) and from_wire.content == (image,)
    assert ToolResultBlock("t", {"only": "dict"}).content == ({"json": {"only": "dict"}},)


def _state_with_bytes_everywhere() -> ConversationState:
    image = ImageBlock("png", PNG)
    return ConversationState(
        model_id="us.anthropic.claude-sonnet-4-20250514-v1:0",
        history=(
            Message(
                role="user",
                content=(
                    TextBlock("What is in these?"),
                    image,
                    DocumentBlock("pdf", "Spec", PDF),
                    VideoBlock("mp4", SLASHES * 10),
                    RawBlock({"image": {"format": "png", "source": {"bytes": SLASHES}}}),
                    RawBlock({"custom": {"nested": [{"blob": PNG}, "text", 1]}}),
                    CachePoint(),
                ),
            ),
            Message(
                role="assistant",
                content=(
                    ReasoningBlock(redacted=SLASHES + PNG),
                    TextBlock("A cat."),
                    ToolUseBlock("t1", "snapshot", {}),
                ),
            ),
            Message(
                role="user",
                content=(
                    ToolResultBlock(
                        "t1", [image, {"image": {"format": "gif", "source": {"bytes": SLASHES}}}]
                    ),
                ),
            ),
            Message.assistant("Done."),
        ),
    )


def test_bytes_survive_a_json_snapshot_round_trip_exactly() -> None:
    """Every byte (typed fields, RawBlock data, tool results, reasoning) comes back as bytes."""
    state = _state_with_bytes_everywhere()
    restored = ConversationState.model_validate_json(state.model_dump_json())
    assert restored == state
    assert [m.to_bedrock() for m in restored.history] == [m.to_bedrock() for m in state.history]
    raw = restored.history[0].content[4]
    assert isinstance(raw, RawBlock) and raw.data["image"]["source"]["bytes"] == SLASHES
    nested = restored.history[0].content[5]
    assert isinstance(nested, RawBlock) and nested.data["custom"]["nested"][0]["blob"] == PNG
    again = ConversationState.model_validate_json(restored.model_dump_json())
    assert again.model_dump_json() == state.model_dump_json()


async def test_restored_snapshot_sends_every_byte_unchanged(
    fake_bedrock: FakeBedrock, session: Any
) -> None:
    """A conversation resumed from a JSON snapshot sends exactly the bytes of the original."""
    state = _state_with_bytes_everywhere()
    bodies = []
    for source in (state, ConversationState.model_validate_json(state.model_dump_json())):
        conv = AsyncConversation.from_state(
            source, session=session, endpoint_url=fake_bedrock.endpoint_url
        )
        async with conv:
            await conv.send("And now?")
        bodies.append(fake_bedrock.requests[-1].body)
    assert bodies[0] == bodies[1]
    sent = bodies[1]["messages"][0]["content"]
    assert base64.b64decode(sent[1]["image"]["source"]["bytes"]) == PNG
    assert base64.b64decode(sent[2]["document"]["source"]["bytes"]) == PDF
    assert base64.b64decode(sent[4]["image"]["source"]["bytes"]) == SLASHES


@pytest.mark.parametrize("name", ["claude_reasoning", "nova_tool_use", "nova_code_execution"])
async def test_recorded_replies_survive_a_snapshot_round_trip(
    fake_bedrock: FakeBedrock, session: Any, name: str
) -> None:
    """History built from real recordings restores equal and is sent back byte for byte."""
    fake_bedrock.enqueue(replay(load_recording(name)))
    async with AsyncConversation(
        "us.anthropic.claude-sonnet-4-20250514-v1:0",
        session=session,
        endpoint_url=fake_bedrock.endpoint_url,
    ) as conv:
        await conv.send("Hello")
        state = conv.snapshot()
        await conv.send("Again")
    original = fake_bedrock.requests[-1].body["messages"]
    restored = ConversationState.model_validate_json(state.model_dump_json())
    assert restored == state
    async with AsyncConversation.from_state(
        restored, session=session, endpoint_url=fake_bedrock.endpoint_url
    ) as conv:
        await conv.send("Again")
    assert fake_bedrock.requests[-1].body["messages"][:2] == original[:2]


async def test_media_prompt_reaches_the_emulator(fake_bedrock: FakeBedrock, session: Any) -> None:
    """Images and documents in a prompt arrive at Bedrock as standard base64 of the file bytes."""
    fake_bedrock.enqueue(reply("A small picture and a PDF."))
    async with AsyncConversation(
        "us.amazon.nova-lite-v1:0", session=session, endpoint_url=fake_bedrock.endpoint_url
    ) as conv:
        await conv.send(
            [TextBlock("Describe both."), ImageBlock("png", PNG), DocumentBlock("pdf", "Spec", PDF)]
        )
        assert isinstance(conv.history[0].content[1], ImageBlock)
    content = fake_bedrock.requests[0].body["messages"][0]["content"]
    assert content[1] == {
        "image": {"format": "png", "source": {"bytes": base64.b64encode(PNG).decode()}}
    }
    assert content[2]["document"]["source"]["bytes"] == base64.b64encode(PDF).decode()


async def test_real_redacted_reasoning_goes_back_byte_for_byte(
    fake_bedrock: FakeBedrock, session: Any
) -> None:
    """A real Claude stream with redacted reasoning (tests/fixtures/bedrock): the redacted
    bytes survive a JSON snapshot and are sent back exactly as Bedrock sent them."""
    recording = load_recording(
        Path(__file__).parent / "fixtures/bedrock/claude_redacted_reasoning.json"
    )
    fake_bedrock.enqueue(replay(recording))
    model = "us.anthropic.claude-3-7-sonnet-20250219-v1:0"
    async with AsyncConversation(
        model, session=session, endpoint_url=fake_bedrock.endpoint_url
    ) as conv:
        await conv.send("Trigger")
        state = conv.snapshot()
    wire = [  # one redacted delta per block in this recording, as Bedrock sent it
        e["delta"]["reasoningContent"]["redactedContent"]
        for name, e in decode_recording(recording)
        if name == "contentBlockDelta"
        and "redactedContent" in e["delta"].get("reasoningContent", {})
    ]
    assert len(wire) == 2
    restored = ConversationState.model_validate_json(state.model_dump_json())
    assert restored == state
    async with AsyncConversation.from_state(
        restored, session=session, endpoint_url=fake_bedrock.endpoint_url
    ) as conv:
        await conv.send("Again")
    sent = fake_bedrock.requests[-1].body["messages"][1]["content"]
    redacted = [b["reasoningContent"]["redactedContent"] for b in sent if "reasoningContent" in b]
    assert redacted == wire


def decode_recording(recording: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The (event name, payload) pairs of a recorded event-stream body."""
    from aiostream_chat._codec import EventStreamDecoder

    frames = EventStreamDecoder().feed(base64.b64decode(recording["body_base64"]))
    return [(str(f.headers.get(":event-type", "")), json.loads(f.payload)) for f in frames]


async def test_cited_reply_goes_back_as_citations_content(
    fake_bedrock: FakeBedrock, session: Any
) -> None:
    """Text that arrived with citation deltas is kept with its citations and sent back on
    the next turn as a citationsContent block (which the emulator validates)."""
    citation = {
        "title": "Spec",
        "sourceContent": [{"text": "The limit is 4.5 MB."}],
        "location": {"documentPage": {"documentIndex": 0, "start": 1, "end": 2}},
    }
    fake_bedrock.enqueue(reply("Documents may be 4.5 MB.", citations=[citation]), reply("Yes."))
    async with AsyncConversation(
        "us.anthropic.claude-sonnet-4-20250514-v1:0",
        session=session,
        endpoint_url=fake_bedrock.endpoint_url,
    ) as conv:
        await conv.send([TextBlock("How big?"), DocumentBlock("pdf", "Spec", PDF, citations=True)])
        await conv.send("Sure?")
    sent = fake_bedrock.requests[1].body["messages"]
    assert sent[0]["content"][1]["document"]["citations"] == {"enabled": True}
    assert sent[1]["content"] == [
        {
            "citationsContent": {
                "content": [{"text": "Documents may be 4.5 MB."}],
                "citations": [citation],
            }
        }
    ]


async def test_tool_result_with_an_image_reaches_the_emulator(
    fake_bedrock: FakeBedrock, session: Any
) -> None:
    """A ToolResultBlock holding an ImageBlock and a JSON value is sent as Bedrock's
    toolResult content entries (image bytes as base64, the dict as a json entry)."""
    from aiostream_chat.testing import ToolUse

    fake_bedrock.enqueue(
        reply("", tool_uses=[ToolUse("snapshot", {}, tool_use_id="tu-1")]), reply("A chart.")
    )
    async with AsyncConversation(
        "us.anthropic.claude-sonnet-4-20250514-v1:0",
        session=session,
        endpoint_url=fake_bedrock.endpoint_url,
    ) as conv:
        await conv.send("Take a snapshot.")
        result = ToolResultBlock("tu-1", [ImageBlock("png", PNG), {"width": 3}], "success")
        assert (await conv.send([result])).text == "A chart."
    content = fake_bedrock.requests[1].body["messages"][2]["content"][0]["toolResult"]["content"]
    assert content == [
        {"image": {"format": "png", "source": {"bytes": base64.b64encode(PNG).decode()}}},
        {"json": {"width": 3}},
    ]
