"""Every real Bedrock recording replays through FakeBedrock + aioboto3 + our decoder to its
`expected` result, and lands in history with every block the model sent. The recordings ship
inside the package, and the repository needs nothing outside its own tree."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import aiostream_chat
from aiostream_chat import (
    InvalidRequestError,
    RawBlock,
    ReasoningBlock,
    TextBlock,
    ToolUseBlock,
)
from aiostream_chat.testing import FakeBedrock, load_recording, recordings_dir, replay

from .conftest import MakeConv

STREAMED = sorted(
    p.stem for p in recordings_dir().glob("*.json") if json.loads(p.read_text())["status"] == 200
)


def _model_of(recording: dict[str, Any]) -> str:
    from urllib.parse import unquote

    return unquote(recording["uri"].split("/model/")[1].split("/")[0])


ROOT = Path(__file__).resolve().parent.parent
PACKAGED = Path(aiostream_chat.__file__).resolve().parent / "testing" / "recordings"
# A path that leaves the repository for a sibling folder; spelled in pieces so that this file
# does not match itself.
OUTSIDE = re.compile(re.escape("..") + r"[/\\]+" + "shared" + "|" + "shared" + r"\W{1,6}fixtures")
SKIPPED_DIRS = {".git", ".venv", "__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache"}


def _repository_files() -> list[Path]:
    files: list[Path] = []
    for folder, dirs, names in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS and not d.endswith(".egg-info")]
        files.extend(Path(folder, name) for name in names)
    return files


def test_recordings_are_present() -> None:
    """The recordings are found, so the parametrised tests below cannot silently vanish."""
    assert {"nova_text", "nova_tool_use", "claude_reasoning", "nova_code_execution"} <= set(
        STREAMED
    )


def test_recordings_ship_inside_the_package_with_their_attribution(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without an override, replay() serves the recordings inside the installed package
    (so a wheel install can replay them), beside a README crediting pydantic-ai's MIT
    cassettes; every recording names its pydantic-ai source."""
    monkeypatch.delenv("AIOSTREAM_CHAT_RECORDINGS", raising=False)
    assert recordings_dir() == PACKAGED
    notice = (PACKAGED / "README.md").read_text(encoding="utf-8")
    assert "pydantic-ai" in notice
    assert "MIT" in notice
    assert "Pydantic Services Inc." in notice
    names = sorted(p.stem for p in PACKAGED.glob("*.json"))
    assert len(names) >= 5
    for name in names:
        assert load_recording(name)["source"].startswith("pydantic/pydantic-ai@")


def test_no_file_reaches_outside_the_repository() -> None:
    """No file of the repository (code, tests, CI, docs) refers to a folder beside it."""
    offenders = []
    for path in _repository_files():
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # binary files
        offenders += [f"{path.relative_to(ROOT)}: {m.group()}" for m in OUTSIDE.finditer(text)]
    assert offenders == []


def test_a_copy_with_nothing_beside_it_replays_every_recording(tmp_path: Path) -> None:
    """A copy of the repository alone in an empty folder (no sibling folders, no override)
    passes the recording tests on its own, importing the package from the copy."""
    clone = tmp_path / "alone" / "aiostream-chat"
    shutil.copytree(
        ROOT,
        clone,
        ignore=shutil.ignore_patterns(*SKIPPED_DIRS, "*.egg-info"),
    )
    env = {k: v for k, v in os.environ.items() if k != "AIOSTREAM_CHAT_RECORDINGS"}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    check = "import aiostream_chat.testing as t; print(t.recordings_dir())"
    where = subprocess.run(
        [sys.executable, "-c", check], cwd=clone, env=env, capture_output=True, text=True
    )
    assert where.stdout.strip() == str(clone / "aiostream_chat" / "testing" / "recordings")
    tests = ["tests/test_recordings.py", "-k", "not a_copy_with_nothing_beside_it"]
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert " passed" in proc.stdout


@pytest.mark.parametrize("name", STREAMED)
async def test_recording_replays_to_expected(
    name: str, fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """Text, stop reason, usage and each content block equal the recording's `expected`."""
    recording = load_recording(name)
    expected = recording["expected"]
    fake_bedrock.enqueue(replay(recording))
    conv = make_conv(_model_of(recording))
    stream = conv.stream("replayed prompt")
    chunks = [chunk async for chunk in stream]
    reply = await stream.get_reply()

    assert "".join(chunks) == expected["text"] == reply.text
    assert reply.stop_reason == expected["stop_reason"]
    usage = expected["usage"]
    assert (reply.usage.input_tokens, reply.usage.output_tokens, reply.usage.total_tokens) == (
        usage["inputTokens"],
        usage["outputTokens"],
        usage["totalTokens"],
    )
    assert len(reply.message.content) == len(expected["blocks"])
    for block, want in zip(reply.message.content, expected["blocks"], strict=True):
        match want["kind"]:
            case "text":
                assert isinstance(block, TextBlock) and block.text == want["text"]
            case "reasoningContent":
                assert isinstance(block, ReasoningBlock)
                assert block.text == want["text"]
                assert block.signature == want.get("signature")
                if "redacted" in want:
                    assert block.redacted == base64.b64decode(want["redacted"])
            case "toolUse":
                assert isinstance(block, ToolUseBlock)
                assert (block.name, block.tool_use_id) == (want["name"], want["id"])
                assert block.input == json.loads(want["input"])
            case kind:
                # Kinds the pinned botocore does not know survive verbatim (nova_code_execution).
                assert isinstance(block, RawBlock)
                assert block.data[kind] == {
                    **want["raw"][kind],
                    "content": [item for delta in want["deltas"] for item in delta[kind]],
                }
    assert reply.tool_uses == tuple(b for b in reply.message.content if isinstance(b, ToolUseBlock))
    assert conv.history[-1] == reply.message
    assert conv.history[-2].text == "replayed prompt"


async def test_reasoning_recording_exposes_reasoning_text(
    fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """Reply.reasoning carries the reasoning text, kept apart from the answer text."""
    recording = load_recording("claude_reasoning")
    fake_bedrock.enqueue(replay(recording))
    reply = await make_conv(_model_of(recording)).send("Hello")
    assert reply.reasoning == recording["expected"]["blocks"][0]["text"]
    assert reply.reasoning not in reply.text


async def test_unknown_block_is_sent_back_on_next_turn(
    fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """The server-tool result botocore 1.40 does not know goes back to Bedrock on the next turn."""
    recording = load_recording("nova_code_execution")
    fake_bedrock.enqueue(replay(recording))
    conv = make_conv(_model_of(recording))
    await conv.send("What is 1234 * 5678?")
    await conv.send("Thanks")
    sent = fake_bedrock.requests[1].body["messages"][1]["content"]
    assert [next(iter(block)) for block in sent] == ["toolUse", "toolResult", "toolUse"]
    assert sent[1]["toolResult"]["content"] == [
        {"json": {"stdOut": "7006652", "stdErr": "", "exitCode": 0, "isError": False}}
    ]


async def test_error_recording_raises_invalid_request(
    fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """The recorded 400 (unknown model) becomes InvalidRequestError with Bedrock's message."""
    recording = load_recording("error_400_unknown_model")
    fake_bedrock.enqueue(replay(recording))
    conv = make_conv(_model_of(recording))
    with pytest.raises(InvalidRequestError) as info:
        await conv.send("hello")
    assert info.value.message == recording["expected"]["error_body"]["message"]
    assert info.value.status_code == 400
    assert conv.history == ()
