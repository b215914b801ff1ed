"""Pytest plugin: the ``fake_bedrock`` fixture, a started FakeBedrock closed after each test.

It works under pytest-asyncio (``@pytest.mark.asyncio`` or its auto mode) and under anyio's
own pytest plugin (``@pytest.mark.anyio``): the server must start on the event loop that runs
the test, and each plugin runs async fixtures on its own loop, so ``fake_bedrock`` hands the
work to whichever of the two runs the test.
"""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator

import pytest

from ._server import FakeBedrock

_ANYIO_BACKEND = "anyio_backend"


@pytest.fixture
def fake_bedrock(request: pytest.FixtureRequest) -> FakeBedrock:
    """A started FakeBedrock on a free loopback port, closed after the test."""
    if _ANYIO_BACKEND in request.fixturenames:
        backend = request.getfixturevalue(_ANYIO_BACKEND)
        name = backend if isinstance(backend, str) else backend[0]
        if name != "asyncio":
            raise pytest.UsageError(
                f"fake_bedrock needs anyio's asyncio backend, not {name!r} "
                "(aiobotocore and the emulator run on asyncio)"
            )
        if _asyncio_auto_mode(request.config):
            raise pytest.UsageError(
                "fake_bedrock in an anyio test needs pytest-asyncio in strict mode (its "
                "default): in auto mode it runs async fixtures on a loop of its own"
            )
        fake: FakeBedrock = request.getfixturevalue("_fake_bedrock_anyio")
        return fake
    # Without pytest-asyncio this fixture does not exist, and pytest says so.
    fake = request.getfixturevalue("_fake_bedrock_asyncio")
    return fake


def _asyncio_auto_mode(config: pytest.Config) -> bool:
    if not config.pluginmanager.has_plugin("asyncio"):
        return False
    mode = config.getoption("asyncio_mode", None) or config.getini("asyncio_mode")
    return bool(mode == "auto")


@pytest.fixture
async def _fake_bedrock_anyio() -> AsyncIterator[FakeBedrock]:
    """The emulator for an anyio test, run by anyio's plugin on the test's loop."""
    async with FakeBedrock() as fake:
        yield fake


if importlib.util.find_spec("pytest_asyncio") is not None:
    import pytest_asyncio

    @pytest_asyncio.fixture
    async def _fake_bedrock_asyncio() -> AsyncIterator[FakeBedrock]:
        """The emulator for a pytest-asyncio test, run by pytest-asyncio on the test's loop."""
        async with FakeBedrock() as fake:
            yield fake
