"""What the browser tests need, and the skip (with its reason) when a part of it is missing."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
# No background networking: this machine reaches no host but loopback.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def require_browser(*modules: str) -> None:
    """Skip the calling test module unless playwright, Debian's chromium and ``modules`` exist."""
    if importlib.util.find_spec("playwright") is None:
        pytest.skip(
            "no browser test: the 'playwright' package is not installed (pip install playwright)",
            allow_module_level=True,
        )
    if not CHROMIUM.exists():
        pytest.skip(
            f"no browser test: {CHROMIUM} not found (apt-get install chromium)",
            allow_module_level=True,
        )
    for module in modules:
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"no browser test: {module} is not installed", allow_module_level=True)
