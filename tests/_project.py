"""Run pytest in a throwaway project of its own, the way a user of the library runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# The child must not inherit this run's options; nothing may leave loopback.
ENV = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")} | {
    "AWS_EC2_METADATA_DISABLED": "true",
    "PYTHONDONTWRITEBYTECODE": "1",
}


def run_pytest(
    project: Path, files: dict[str, str], *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Write ``files`` into ``project`` (which becomes pytest's rootdir) and run pytest there."""
    project.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (project / name).write_text(text, encoding="utf-8")
    if not any(name in files for name in ("pytest.ini", "pyproject.toml", "tox.ini")):
        (project / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")  # stop the search
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args]
    return subprocess.run(
        [*command, "--rootdir", str(project)],
        cwd=project,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
