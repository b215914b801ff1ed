"""Pytest plugin: the `fake_bedrock` fixture, a started FakeBedrock closed after each test."""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator

from ._server import FakeBedrock

if importlib.util.find_spec("pytest_asyncio") is not None:
    import pytest_asyncio

    @pytest_asyncio.fixture
    async def fake_bedrock() -> AsyncIterator[FakeBedrock]:
        """A started FakeBedrock on a free loopback port, closed after the test."""
        async with FakeBedrock() as fake:
            yield fake
