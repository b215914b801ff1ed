"""The ``aiostream-chat`` command line, run as a subprocess the way a user runs it: streaming
to the terminal, multi-turn chat from stdin, fan-out with ordered JSONL output and a summary,
Ctrl-C, and one-line errors with meaningful exit statuses."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pty
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aiostream_chat._cli_common import CliError
from aiostream_chat._cli_fanout import percentile, read_prompts
from aiostream_chat.testing import FakeBedrock, Fault, ReceivedRequest, Script, reply

# Dummy credentials for --endpoint-url runs against the test's emulator; never the network.
ENV = {
    **os.environ,
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_ACCESS_KEY_ID": "cli-test",
    "AWS_SECRET_ACCESS_KEY": "cli-test",
    "PYTHONUNBUFFERED": "1",
}
CLI = [sys.executable, "-W", "default::ResourceWarning", "-m", "aiostream_chat"]


def at(fake: FakeBedrock) -> list[str]:
    return ["--model", "test-model", "--region", "us-east-1", "--endpoint-url", fake.endpoint_url]


async def start(*args: str, stdin: bool = False) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *CLI,
        *args,
        env=ENV,
        stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def run(*args: str, stdin: str | None = None, limit: float = 30) -> tuple[int, str, str]:
    """Run the CLI to its end, while the test's event loop keeps the emulator serving."""
    proc = await start(*args, stdin=stdin is not None)
    data = stdin.encode() if stdin is not None else None
    out, err = await asyncio.wait_for(proc.communicate(data), limit)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def assert_one_line(stderr: str) -> str:
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


async def test_chat_emulator_prints_reply() -> None:
    """`chat --emulator PROMPT` runs the whole stack in-process and prints the reply."""
    code, out, err = await run("chat", "--emulator", "What is a stream?")
    assert code == 0, err
    assert out.startswith("You asked about What is a stream. ")
    assert out.endswith("not from a real model.\n")
    assert err == ""


async def test_chat_streams_text_as_it_arrives(fake_bedrock: FakeBedrock) -> None:
    """The first chunk reaches stdout while the reply is still streaming, not at the end."""
    fake_bedrock.enqueue(reply("one two three four five six", chunks=6, delay=0.15))
    proc = await start("chat", *at(fake_bedrock), "count")
    assert proc.stdout is not None
    first = await asyncio.wait_for(proc.stdout.read(3), 20)
    assert first == b"one"
    assert proc.returncode is None  # still running: later chunks have not been sent yet
    rest, _ = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0
    assert (first + rest).decode() == "one two three four five six\n"


async def test_chat_sends_model_settings(fake_bedrock: FakeBedrock) -> None:
    """--system, --max-tokens and --temperature reach the ConverseStream request."""
    code, _, err = await run(
        "chat", *at(fake_bedrock), "--system", "Be terse.", "--max-tokens", "50",
        "--temperature", "0.2", "hi",
    )  # fmt: skip
    assert code == 0, err
    body = fake_bedrock.requests[0].body
    assert body["system"] == [{"text": "Be terse."}]
    assert body["inferenceConfig"] == {"maxTokens": 50, "temperature": 0.2}
    assert fake_bedrock.requests[0].model_id == "test-model"


async def test_chat_without_prompt_is_multi_turn_from_stdin(fake_bedrock: FakeBedrock) -> None:
    """With no prompt, each non-blank stdin line is a turn of one conversation (the second
    request carries the first turn), until end of input; works when stdin is not a TTY."""
    fake_bedrock.enqueue(reply("First answer."), reply("Second answer."))
    code, out, err = await run("chat", *at(fake_bedrock), stdin="first\n\n  \nsecond\n")
    assert code == 0, err
    assert out == "First answer.\nSecond answer.\n"
    assert len(fake_bedrock.requests) == 2
    messages = fake_bedrock.requests[1].body["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[1]["content"] == [{"text": "First answer."}]


async def test_chat_interactive_error_continues_and_exits_1(fake_bedrock: FakeBedrock) -> None:
    """A failed turn in multi-turn mode prints one line and the chat carries on without it;
    the exit status still reports the failure."""
    fake_bedrock.enqueue(reply(fault=Fault.http(400)), reply("Fine now."))
    code, out, err = await run("chat", *at(fake_bedrock), stdin="bad\ngood\n")
    assert code == 1
    assert out == "Fine now.\n"
    assert "InvalidRequestError" in assert_one_line(err)
    assert len(fake_bedrock.requests[1].body["messages"]) == 1  # the failed turn left no trace


async def test_ctrl_c_cancels_turn_closes_connection_exit_130(fake_bedrock: FakeBedrock) -> None:
    """Ctrl-C mid-reply: exit status 130, one line on stderr, and the emulator sees the
    response cut short (the connection closed before the reply was complete)."""
    fake_bedrock.enqueue(reply("tick " * 40, chunks=40, delay=0.1))
    proc = await start("chat", *at(fake_bedrock), "count")
    assert proc.stdout is not None
    assert await asyncio.wait_for(proc.stdout.read(4), 20) == b"tick"
    proc.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 130
    line = assert_one_line(err.decode())
    assert line.startswith("aiostream-chat: interrupted; the turn in flight was cancelled")
    (disconnect,) = await fake_bedrock.wait_for_disconnects(1)
    assert not disconnect.completed
    assert disconnect.frames_sent < 40


async def test_ctrl_c_while_waiting_for_input_exits_130() -> None:
    """Ctrl-C at the multi-turn prompt (stdin open, nothing typed) exits at once with 130;
    the blocked stdin read does not keep the process alive."""
    proc = await start("chat", "--emulator", stdin=True)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(b"hello\n")
    await proc.stdin.drain()
    await asyncio.wait_for(proc.stdout.readline(), 20)  # the first reply: now it waits
    proc.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 130
    assert assert_one_line(err.decode()) == "aiostream-chat: interrupted"


async def test_bedrock_error_is_one_line_exit_1(fake_bedrock: FakeBedrock) -> None:
    """A Bedrock error prints one line naming the error class, no traceback, exit 1."""
    fake_bedrock.enqueue(reply(fault=Fault.http(403)))
    code, out, err = await run("chat", *at(fake_bedrock), "hi")
    assert code == 1
    assert out == ""
    line = assert_one_line(err)
    assert line.startswith("aiostream-chat: error: AccessDeniedError: ")
    assert "request ID" in line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["chat", "hi"], "--model is required"),
        (["chat", "--emulator", "--endpoint-url", "http://127.0.0.1:9", "hi"], "exclude"),
        (["chat", "--emulator", "--max-tokens", "0", "hi"], "--max-tokens"),
        (["chat", "--emulator", "   "], "prompt is empty"),
        (["fan-out", "--emulator", "/nonexistent/prompts.jsonl"], "cannot read"),
    ],
)
async def test_usage_errors_are_one_line_exit_2(args: list[str], message: str) -> None:
    """Bad options or input: one line on stderr, exit status 2, no network I/O."""
    code, out, err = await run(*args)
    assert code == 2
    assert out == ""
    assert message in assert_one_line(err)


def _fan_out_responder(request: ReceivedRequest) -> Script:
    if "fail" in request.prompt_text:
        return reply(fault=Fault.http(400, message="That prompt is not allowed."))
    text = f"Answer to {request.prompt_text}."
    usage = {"inputTokens": 10, "outputTokens": 5, "totalTokens": 15}
    return reply(text, chunks=3, delay=0.05, usage=usage)


async def test_fan_out_writes_ordered_jsonl_summary_and_progress(
    fake_bedrock: FakeBedrock, tmp_path: Path
) -> None:
    """fan-out answers every line concurrently (never more than --concurrency at once),
    writes one record per prompt in input order (ids kept, failures as error records),
    prints a summary with tokens and p50/p95 time to first token (and no progress bar, since
    stderr is not a terminal), and exits 1 because one turn failed."""
    fake_bedrock.responder = _fan_out_responder
    prompts = tmp_path / "prompts.jsonl"
    lines = [json.dumps(f"q{i}") for i in range(6)]
    lines[2] = json.dumps({"prompt": "please fail", "id": "bad"})
    lines[4] = json.dumps({"prompt": "q4", "id": 44})
    prompts.write_text("\n".join(lines[:3]) + "\n\n" + "\n".join(lines[3:]) + "\n")
    replies = tmp_path / "replies.jsonl"
    code, out, err = await run(
        "fan-out", str(prompts), "-o", str(replies), "--concurrency", "3", *at(fake_bedrock),
    )  # fmt: skip
    assert code == 1, err
    assert out == ""
    records = [json.loads(line) for line in replies.read_text().splitlines()]
    assert [r["index"] for r in records] == list(range(6))
    assert records[0]["text"] == "Answer to q0."
    assert records[0]["stop_reason"] == "end_turn"
    assert records[0]["usage"] == {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15}
    assert records[0]["error"] is None
    assert records[0]["time_to_first_token"] > 0
    assert records[2]["id"] == "bad"
    assert records[2]["error"]["type"] == "InvalidRequestError"
    assert "not allowed" in records[2]["error"]["message"]
    assert records[4]["id"] == 44
    assert "id" not in records[5]
    assert 1 < fake_bedrock.max_open_streams <= 3
    assert "Traceback" not in err
    assert "\r" not in err and "turns, 1 failed, " not in err  # no bar off a terminal
    summary = assert_one_line(err)
    assert summary.startswith("aiostream-chat: 6 turns, 1 failed; 75 tokens (50 in, 25 out)")
    assert "time to first token p50 " in summary
    assert "p95 " in summary


async def test_fan_out_stdin_to_stdout_without_progress() -> None:
    """`fan-out -` reads stdin and writes JSONL to stdout; with stderr not a terminal there
    is no progress bar, only the summary line."""
    code, out, err = await run("fan-out", "-", "--emulator", stdin='"a"\n{"prompt": "b"}\n')
    assert code == 0, err
    assert [json.loads(line)["index"] for line in out.splitlines()] == [0, 1]
    assert assert_one_line(err).startswith("aiostream-chat: 2 turns, 0 failed;")


async def test_console_script_and_version() -> None:
    """The installed `aiostream-chat` script runs the same CLI as `python -m aiostream_chat`."""
    script = Path(sys.executable).parent / "aiostream-chat"
    if not script.exists():
        pytest.skip("the package is not installed with its console script")
    proc = await asyncio.create_subprocess_exec(
        str(script), "--version", env=ENV, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0
    assert out.decode().startswith("aiostream-chat ")


def test_read_prompts_accepts_strings_and_objects() -> None:
    """Input lines are JSON strings or {"prompt": ...} objects; blank lines are skipped."""
    got = read_prompts(['"one"\n', "\n", '{"prompt": "two", "id": 7}\n'], "p.jsonl")
    assert got == [("one", None), ("two", 7)]


@pytest.mark.parametrize("line", ["not json", "42", '{"text": "x"}', '""'])
def test_read_prompts_names_the_bad_line(line: str) -> None:
    """A bad input line is a usage error naming the file and line number."""
    with pytest.raises(CliError, match=r"^p\.jsonl:2: ") as info:
        read_prompts(['"ok"', line], "p.jsonl")
    assert info.value.status == 2


def test_percentile_is_nearest_rank() -> None:
    """p50/p95 use the nearest-rank method; no values gives None."""
    values = [0.5, 0.1, 0.4, 0.2, 0.3]
    assert percentile(values, 50) == 0.3
    assert percentile(values, 95) == 0.5
    assert percentile(list(range(1, 101)), 95) == 95
    assert percentile([], 50) is None


# --- no region ---


@pytest.mark.parametrize("region", [None, "", "  "])
async def test_no_region_says_pass_region_exit_2(region: str | None, tmp_path: Path) -> None:
    """Without a region (none in the environment or AWS config, or an empty --region) the CLI
    prints one line telling to pass --region and exits 2, before any connection is made."""
    env = {k: v for k, v in ENV.items() if k not in {"AWS_REGION", "AWS_DEFAULT_REGION"}}
    env["AWS_CONFIG_FILE"] = str(tmp_path / "no-config")
    args = ["chat", "--model", "m", "--endpoint-url", "http://127.0.0.1:9", "hi"]
    if region is not None:
        args[1:1] = ["--region", region]
    proc = await asyncio.create_subprocess_exec(
        *CLI, *args, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert out == b""
    line = assert_one_line(err.decode())
    assert line == "aiostream-chat: error: no AWS region: pass --region (or set AWS_REGION)"


# --- a person at a terminal ---


@contextlib.asynccontextmanager
async def on_terminal(
    *args: str, stdin_only: bool = True
) -> AsyncIterator[tuple[asyncio.subprocess.Process, int]]:
    """Run the CLI with a pseudo-terminal as stdin (and as stdout and stderr too unless
    ``stdin_only``); yield the process and the terminal's master end."""
    master, slave = pty.openpty()
    out = asyncio.subprocess.PIPE if stdin_only else slave
    proc = await asyncio.create_subprocess_exec(
        *CLI, *args, env=ENV, stdin=slave, stdout=out, stderr=out
    )
    os.close(slave)
    try:
        yield proc, master
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        os.close(master)


async def read_until(stream: asyncio.StreamReader | None, text: str, seen: bytearray) -> str:
    """Read ``stream`` into ``seen`` until ``text`` shows; return all of it so far."""
    assert stream is not None
    while text.encode() not in seen:
        chunk = await asyncio.wait_for(stream.read(4096), 20)
        assert chunk, f"end of output before {text!r}: {seen.decode()!r}"
        seen += chunk
    return seen.decode()


async def test_ctrl_c_during_an_interactive_reply_cancels_only_that_reply(
    fake_bedrock: FakeBedrock,
) -> None:
    """At an interactive prompt, Ctrl-C mid-reply cancels that reply (its connection closes
    before the reply is complete, a short note says so), the prompt comes back, and the next
    turn is sent with the history unchanged; Ctrl-C at the empty prompt then ends the chat
    with status 0 on a fresh line, without a traceback."""
    fake_bedrock.enqueue(reply("tick " * 40, chunks=40, delay=0.1), reply("Second answer."))
    async with on_terminal("chat", *at(fake_bedrock)) as (proc, terminal):
        out, err = bytearray(), bytearray()
        await read_until(proc.stderr, "> ", err)
        os.write(terminal, b"count\n")
        await read_until(proc.stdout, "tick", out)
        proc.send_signal(signal.SIGINT)
        (disconnect,) = await fake_bedrock.wait_for_disconnects(1)
        assert not disconnect.completed and disconnect.frames_sent < 40
        note = "aiostream-chat: reply cancelled; the conversation is unchanged\n> "
        await read_until(proc.stderr, note, err)
        assert proc.returncode is None  # still chatting
        os.write(terminal, b"again\n")
        await read_until(proc.stdout, "Second answer.\n", out)
        await read_until(proc.stderr, note + "> ", err)
        proc.send_signal(signal.SIGINT)  # at the empty prompt: quit
        rest, tail = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0
    stderr = (err + tail).decode()
    assert stderr.endswith("> \n")  # the shell's prompt will start on a fresh line
    assert "Traceback" not in stderr
    assert (out + rest).decode().startswith("tick ")
    assert (out + rest).decode().endswith("\nSecond answer.\n")
    messages = fake_bedrock.requests[1].body["messages"]
    assert [m["content"][0]["text"] for m in messages] == ["again"]


async def test_ctrl_d_at_the_interactive_prompt_exits_0_on_a_fresh_line(
    fake_bedrock: FakeBedrock,
) -> None:
    """Ctrl-D (end of input) at the prompt ends the chat with status 0 and a newline after
    the prompt, so the shell's prompt starts on a fresh line."""
    fake_bedrock.enqueue(reply("Hi there."))
    async with on_terminal("chat", *at(fake_bedrock)) as (proc, terminal):
        err = bytearray()
        await read_until(proc.stderr, "> ", err)
        os.write(terminal, b"hello\n")
        out = bytearray()
        await read_until(proc.stdout, "Hi there.\n", out)
        await read_until(proc.stderr, "> > ", err)
        os.write(terminal, b"\x04")  # Ctrl-D on an empty line: end of input
        _, tail = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0
    stderr = (err + tail).decode()
    assert stderr.endswith("> > \n")
    assert "Traceback" not in stderr


async def read_to_end(terminal: int) -> bytes:
    """Everything written to the terminal until every process holding it has closed it."""
    loop = asyncio.get_running_loop()
    data = bytearray()
    while True:
        try:
            chunk = await loop.run_in_executor(None, os.read, terminal, 4096)
        except OSError:  # EIO: the other end is closed
            return bytes(data)
        if not chunk:
            return bytes(data)
        data += chunk


def render(output: str) -> list[str]:
    """The lines a terminal shows for ``output``: carriage returns, erase-to-end-of-line."""
    lines: list[str] = []
    line, column = "", 0
    for token in re.findall(r"\x1b\[K|\r|\n|[^\r\n\x1b]+", output):
        if token == "\n":
            lines.append(line)
            line, column = "", 0
        elif token == "\r":
            column = 0
        elif token == "\x1b[K":
            line = line[:column]
        else:
            line = line[:column] + token + line[column + len(token) :]
            column += len(token)
    return [*lines, line] if line else lines


async def test_fan_out_bar_never_mixes_with_json_lines_on_a_terminal(
    fake_bedrock: FakeBedrock, tmp_path: Path
) -> None:
    """With stdout and stderr on one terminal, the progress bar is drawn and redrawn on stderr,
    and wiped before each JSON line: every line the terminal shows is either a whole JSON
    record, the final bar, or the summary."""
    fake_bedrock.responder = _fan_out_responder
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps(f"q{i}") + "\n" for i in range(6)))
    args = ["fan-out", str(prompts), "--concurrency", "2", *at(fake_bedrock)]
    async with on_terminal(*args, stdin_only=False) as (proc, terminal):
        shown = await asyncio.wait_for(read_to_end(terminal), 30)
        await asyncio.wait_for(proc.wait(), 20)
    assert proc.returncode == 0
    text = shown.decode().replace("\r\n", "\n")  # the terminal turns "\n" into "\r\n"
    assert text.count("\r[") > 1  # the bar was drawn, and redrawn
    lines = render(text)
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert [r["index"] for r in records] == list(range(6))
    others = [line for line in lines if not line.startswith("{")]
    assert len(others) == 2, lines
    assert re.fullmatch(r"\[#+\] 6/6 turns, 0 failed, \d+ chars, [\d.]+s", others[0])
    assert others[1].startswith("aiostream-chat: 6 turns, 0 failed;")


async def test_ctrl_c_during_fan_out_says_what_was_written_exit_130(
    fake_bedrock: FakeBedrock,
) -> None:
    """Ctrl-C during fan-out cancels the turns in flight, closes their connections, and says
    in one line how many replies were written; exit status 130."""
    all_started = asyncio.Event()

    def slow(request: ReceivedRequest) -> Script:
        if len(fake_bedrock.requests) == 4:
            all_started.set()
        return reply("slow " * 30, chunks=30, delay=0.1)

    fake_bedrock.responder = slow
    proc = await start("fan-out", "-", "--concurrency", "4", *at(fake_bedrock), stdin=True)
    assert proc.stdin is not None
    proc.stdin.write(b'"a"\n"b"\n"c"\n"d"\n')
    proc.stdin.close()
    await asyncio.wait_for(all_started.wait(), 20)
    proc.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 130
    line = assert_one_line(err.decode())
    assert line == (
        "aiostream-chat: interrupted; 0 of 4 replies written; the turns in flight were cancelled"
    )
    disconnects = await fake_bedrock.wait_for_disconnects(4)
    assert not any(d.completed for d in disconnects)


async def test_emulator_command_with_its_port_taken_is_one_line_exit_2() -> None:
    """`python -m aiostream_chat.testing --port N` with N already in use prints one line
    naming the address and the reason, exits 2, and shows no traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-W", "error::ResourceWarning", "-m", "aiostream_chat.testing",
            "--port", str(port), env=ENV, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert out == b""
    line = assert_one_line(err.decode())
    assert line == (
        f"python -m aiostream_chat.testing: error: cannot listen on 127.0.0.1:{port}: "
        "Address already in use"
    )


async def test_chat_api_key_is_bearer_auth_and_never_printed(fake_bedrock: FakeBedrock) -> None:
    """`--api-key KEY` authenticates with a bearer token instead of SigV4 (the emulator sees
    it), and the key appears nowhere in what the command prints."""
    fake_bedrock.enqueue(reply("Keyed answer."))
    key = "ABSKsecret-cli-key-123"
    code, out, err = await run("chat", *at(fake_bedrock), "--api-key", key, "hi")
    assert code == 0, err
    assert out == "Keyed answer.\n"
    assert fake_bedrock.requests[0].auth == "bearer"
    assert key not in out + err
