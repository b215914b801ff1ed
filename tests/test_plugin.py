"""The ``fake_bedrock`` pytest fixture in a user's own project: under pytest-asyncio (strict
mode, ``@pytest.mark.asyncio``) and under anyio's pytest plugin (``@pytest.mark.anyio``), with
or without pytest-asyncio installed beside it. Each case is a real pytest run in a temp project."""

from __future__ import annotations

from pathlib import Path

from ._project import run_pytest

# A user's test module; MARK is replaced by the marker under test. The first test talks to the
# emulator through the whole stack; the second checks that the first one's server was closed.
TESTS = """
import socket

import aioboto3
import pytest

from aiostream_chat import AsyncConversation
from aiostream_chat.testing import FakeBedrock, reply

PORTS = []


@MARK
async def test_fixture_serves_the_test(fake_bedrock: FakeBedrock) -> None:
    fake_bedrock.enqueue(reply("Hello!"))
    session = aioboto3.Session(
        aws_access_key_id="x", aws_secret_access_key="x", region_name="us-east-1"
    )
    url = fake_bedrock.endpoint_url
    async with AsyncConversation("m", session=session, endpoint_url=url) as conv:
        assert (await conv.send("hi")).text == "Hello!"
    assert fake_bedrock.requests[0].prompt_text == "hi"
    PORTS.append(int(url.rsplit(":", 1)[1]))


def test_fixture_closed_its_server() -> None:
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", PORTS[0]), timeout=5).close()
"""
STRICT_WARNINGS = "filterwarnings =\n    error\n    error::ResourceWarning\n"
WITH_ASYNCIO = "[pytest]\nasyncio_default_fixture_loop_scope = function\n" + STRICT_WARNINGS


def _files(mark: str, ini: str) -> dict[str, str]:
    return {"test_user.py": TESTS.replace("MARK", mark), "pytest.ini": ini}


def test_fixture_under_pytest_asyncio_strict_mode(tmp_path: Path) -> None:
    """With pytest-asyncio in strict mode, an ``@pytest.mark.asyncio`` test gets a started
    emulator on its own loop, closed after the test, with no warning."""
    proc = run_pytest(tmp_path, _files("pytest.mark.asyncio", WITH_ASYNCIO))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 passed" in proc.stdout


def test_fixture_under_anyio_without_pytest_asyncio(tmp_path: Path) -> None:
    """In a project without pytest-asyncio (as a Starlette user's may be), anyio's plugin alone
    runs an ``@pytest.mark.anyio`` test with a working emulator, closed after the test."""
    files = _files("pytest.mark.anyio", "[pytest]\n" + STRICT_WARNINGS)
    # Loaded before the plugins' entry points: pytest-asyncio cannot be imported at all.
    files["no_pytest_asyncio.py"] = 'import sys\n\nsys.modules["pytest_asyncio"] = None\n'
    proc = run_pytest(tmp_path, files, "-p", "no:asyncio", "-p", "no_pytest_asyncio")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 passed" in proc.stdout


def test_fixture_under_anyio_beside_pytest_asyncio(tmp_path: Path) -> None:
    """With both plugins loaded (pytest-asyncio in its default strict mode), an
    ``@pytest.mark.anyio`` test still gets an emulator on the loop anyio runs it on."""
    proc = run_pytest(tmp_path, _files("pytest.mark.anyio", WITH_ASYNCIO))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 passed" in proc.stdout


TRIO_TEST = """
import pytest


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_on_trio(fake_bedrock: object) -> None:
    pass
"""


def test_fixture_misuse_is_a_clear_error(tmp_path: Path) -> None:
    """Where the fixture cannot work it fails at once with one sentence saying why, instead of
    timing out against a server whose loop is not running: an anyio test under pytest-asyncio's
    auto mode (which runs async fixtures on a loop of its own), and anyio's trio backend."""
    files = _files("pytest.mark.anyio", WITH_ASYNCIO + "asyncio_mode = auto\n")
    files["test_trio.py"] = TRIO_TEST
    proc = run_pytest(tmp_path, files, "-k", "serves_the_test or on_trio")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "2 error" in proc.stdout
    assert "needs pytest-asyncio in strict mode" in proc.stdout
    assert "needs anyio's asyncio backend, not 'trio'" in proc.stdout
    assert "TimeoutError" not in proc.stdout
