"""Every ```python block of README.md runs as written, so the README cannot drift: a test
module (one defining ``test_`` functions) as a real pytest file in a fresh project of its own,
anything else as a program against the emulator, found through the standard
``AWS_ENDPOINT_URL_BEDROCK_RUNTIME`` variable with dummy credentials. A block may opt out only
with a visible first line ``# readme: not run (<reason>)``."""

from __future__ import annotations

import ast
import asyncio
import os
import re
import sys
from pathlib import Path

import pytest

from aiostream_chat.testing import FakeBedrock

from ._project import run_pytest

README = Path(__file__).resolve().parent.parent / "README.md"
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
OPT_OUT = re.compile(r"# readme: not run \((.+)\)")
# Runs a block the way `python -m asyncio` (the asyncio REPL) would: top-level `await` and
# `async with` are allowed there, and a block that uses them is run on a fresh event loop.
RUNNER = """
import ast, asyncio, inspect, sys
path = sys.argv[1]
with open(path, encoding="utf-8") as file:
    source = file.read()
code = compile(source, path, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
result = eval(code, {"__name__": "__main__"})
if inspect.iscoroutine(result):
    asyncio.run(result)
"""


def _blocks() -> list[tuple[int, str, str]]:
    """(line number, language, code) for every fenced block of the README."""
    text = README.read_text(encoding="utf-8")
    return [
        (text.count("\n", 0, m.start()) + 1, m.group(1).strip(), m.group(2))
        for m in FENCE.finditer(text)
    ]


def _python_blocks() -> list[tuple[int, str]]:
    return [(line, code) for line, lang, code in _blocks() if lang == "python"]


def _is_test_module(code: str) -> bool:
    tree = ast.parse(code)
    return any(
        isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test_")
        for node in tree.body
    )


def _opted_out(code: str) -> str | None:
    first = code.lstrip().splitlines()[0] if code.strip() else ""
    match = OPT_OUT.fullmatch(first.strip())
    return match.group(1).strip() if match else None


PROGRAMS = [
    pytest.param(code, id=f"line-{line}")
    for line, code in _python_blocks()
    if not _is_test_module(code) and _opted_out(code) is None
]
TEST_MODULES = [
    pytest.param(code, id=f"line-{line}")
    for line, code in _python_blocks()
    if _is_test_module(code) and _opted_out(code) is None
]


def test_readme_has_runnable_python_blocks() -> None:
    """The README's quick-start programs and its testing example are all found and run below
    (so a change to the fences cannot silently empty this test module)."""
    assert len(PROGRAMS) >= 2
    assert len(TEST_MODULES) >= 1


def _parses_as_python(code: str) -> bool:
    try:
        ast.parse(code)
    except SyntaxError:
        return False
    return bool(code.strip())


def test_no_python_hides_in_another_fence() -> None:
    """Every block that is Python is fenced as ```python, so it is run: a block under another
    label (py, an unlabelled fence, ...) must not parse as Python."""
    for line, lang, code in _blocks():
        if lang != "python":
            assert not _parses_as_python(code), f"README.md:{line}: Python fenced as {lang!r}"


def test_opted_out_blocks_say_why() -> None:
    """A python block that is not run says so on its first line, with a reason."""
    for line, code in _python_blocks():
        if "readme: not run" in code:
            assert _opted_out(code), f"README.md:{line}: the opt-out needs '(<reason>)'"


@pytest.mark.parametrize("code", PROGRAMS)
async def test_readme_program_runs_against_the_emulator(
    code: str, fake_bedrock: FakeBedrock, tmp_path: Path
) -> None:
    """The block runs as a program (a separate Python process, as a user would run it), with
    the emulator as its Bedrock endpoint: exit status 0, no traceback, something printed, and
    (unless the block starts an emulator of its own) the emulator got its requests and ended
    every response it began."""
    script = tmp_path / "block.py"
    script.write_text(code, encoding="utf-8")
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": fake_bedrock.endpoint_url,
        "AWS_ACCESS_KEY_ID": "readme",
        "AWS_SECRET_ACCESS_KEY": "readme",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-W", "error::ResourceWarning", "-c", RUNNER, str(script),
        cwd=tmp_path, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 45)
    assert proc.returncode == 0, err.decode()
    assert "Traceback" not in err.decode()
    assert out.strip()
    if "FakeBedrock(" not in code:
        assert fake_bedrock.requests, "the block never reached the emulator"
        await fake_bedrock.assert_all_closed()


@pytest.mark.parametrize("code", TEST_MODULES)
@pytest.mark.parametrize("plugin", ["asyncio", "anyio"])
def test_readme_test_module_passes_in_a_fresh_project(
    code: str, plugin: str, tmp_path: Path
) -> None:
    """The block, saved as a test file in an empty project (no conftest, no asyncio auto
    mode), passes under pytest; it also passes with its marker switched to
    ``@pytest.mark.anyio``, as the README says it would."""
    if plugin == "anyio":
        assert "@pytest.mark.asyncio" in code
        code = code.replace("@pytest.mark.asyncio", "@pytest.mark.anyio")
    proc = run_pytest(tmp_path, {"test_from_readme.py": code})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"\b[1-9]\d* passed", proc.stdout), proc.stdout
    assert " failed" not in proc.stdout
    assert " error" not in proc.stdout
