"""Static checks run as tests so the README's one test command covers them: ruff (lint and
format) and mypy --strict on the package and on the public-API usage module."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)


def _tool(name: str) -> str:
    path = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed; install the dev extra: pip install -e '.[dev]'")
    return path


def test_ruff_lint() -> None:
    """ruff (with ASYNC and B rules) finds nothing in the package, tests, examples, benchmarks."""
    result = _run(_tool("ruff"), "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format() -> None:
    """Every file is formatted as ruff format would write it."""
    result = _run(_tool("ruff"), "format", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.timeout(300)
def test_mypy_strict() -> None:
    """mypy --strict is clean on the package and on tests/typecheck_api.py (the public API)."""
    result = _run(_tool("mypy"), "aiostream_chat", "tests/typecheck_api.py")
    assert result.returncode == 0, result.stdout + result.stderr
