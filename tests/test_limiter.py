"""Limiter.local and Limiter.redis: in-flight limit, AIMD, request and token buckets."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
import pytest_asyncio

from aiostream_chat import Limiter, StoreError
from aiostream_chat._limiter import LocalLimiter, Permit
from aiostream_chat._redis_limiter import RedisLimiter
from tests._redis import RedisServer, free_port

MakeLimiter = Callable[..., Limiter]


@pytest_asyncio.fixture(params=["local", "redis"])
async def make_limiter(request: pytest.FixtureRequest) -> AsyncIterator[MakeLimiter]:
    """Limiter factory; for Redis every call is a separate client sharing one name."""
    made: list[Limiter] = []
    name = f"t{uuid.uuid4().hex[:8]}"
    local: list[Limiter] = []
    if request.param == "redis":
        url = request.getfixturevalue("redis_server").url

    def make(**limits: int) -> Limiter:
        if request.param == "local":
            if not local:  # "separate clients" of a local limiter are the same object
                local.append(Limiter.local(**limits))
            return local[0]
        limiter = Limiter.redis(url, name, **limits)
        made.append(limiter)
        return limiter

    yield make
    for limiter in made + local:
        await limiter.aclose()


async def _settle() -> None:
    """Let background reports (Redis) and wake-ups (local) run."""
    for _ in range(20):
        await asyncio.sleep(0.005)


async def test_max_in_flight_is_shared_and_never_exceeded(make_limiter: MakeLimiter) -> None:
    """30 holders through three limiter objects with max_in_flight=4: at most 4 at once, all
    eventually served."""
    limiters = [make_limiter(max_in_flight=4) for _ in range(3)]
    holding = peak = served = 0

    async def hold(limiter: Limiter) -> None:
        nonlocal holding, peak, served
        permit = await limiter.acquire()
        holding += 1
        peak = max(peak, holding)
        await asyncio.sleep(0.01)
        holding -= 1
        served += 1
        permit.release("completed")

    await asyncio.wait_for(asyncio.gather(*(hold(limiters[i % 3]) for i in range(30))), 30)
    assert served == 30
    assert 1 <= peak <= 4


async def test_a_waiter_cancelled_holds_nothing(make_limiter: MakeLimiter) -> None:
    """Cancelling an acquire that waits for a slot re-raises and takes no slot."""
    limiter = make_limiter(max_in_flight=1)
    first = await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0.05)
    assert not waiter.done()
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    first.release("completed")
    await _settle()
    second = await asyncio.wait_for(limiter.acquire(), 10)
    second.release("completed")


async def test_a_retry_goes_ahead_of_first_attempts_waiting_in_this_process(
    make_limiter: MakeLimiter,
) -> None:
    """With the one slot held and first attempts queued, a retry that queues after them gets
    the slot before the ones still waiting (on Redis: all but the waiter already asking Redis),
    so backoff never sends a retry to the back of the line."""
    limiter = make_limiter(max_in_flight=1)
    held = await limiter.acquire()
    order: list[str] = []

    async def take(name: str, retry: bool) -> None:
        permit = await limiter.acquire(retry=retry)
        order.append(name)
        await asyncio.sleep(0.01)
        permit.release("completed")

    tasks = []
    for name in ("first-1", "first-2", "first-3"):
        tasks.append(asyncio.create_task(take(name, retry=False)))
        await asyncio.sleep(0.02)  # queued in this order
    tasks.append(asyncio.create_task(take("retry", retry=True)))
    await asyncio.sleep(0.02)
    held.release("completed")
    await asyncio.wait_for(asyncio.gather(*tasks), 30)
    assert sorted(order) == ["first-1", "first-2", "first-3", "retry"]
    assert order.index("retry") < order.index("first-2") < order.index("first-3")


async def test_waiters_cancelled_in_the_queue_hold_nothing(make_limiter: MakeLimiter) -> None:
    """Of four waiters queued behind the held slot, cancelling two (a retry among them) leaves
    the queue working: the other two are served, nothing is held afterwards."""
    limiter = make_limiter(max_in_flight=1)
    held = await limiter.acquire()
    served: list[int] = []

    async def take(n: int, retry: bool) -> None:
        permit = await limiter.acquire(retry=retry)
        served.append(n)
        permit.release("completed")

    tasks = [asyncio.create_task(take(n, retry=n == 2)) for n in range(4)]
    await asyncio.sleep(0.05)
    for n in (1, 2):
        tasks[n].cancel()
    held.release("completed")
    done = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)
    kinds = [type(d).__name__ for d in done]
    assert kinds == ["NoneType", "CancelledError", "CancelledError", "NoneType"]
    assert sorted(served) == [0, 3]
    await _settle()
    again = await asyncio.wait_for(limiter.acquire(), 10)
    again.release("completed")


async def test_throttling_halves_the_limit_and_success_raises_it(
    make_limiter: MakeLimiter,
) -> None:
    """A throttled attempt halves the shared limit (seen by every client); completed attempts
    add 1/limit each until max_in_flight."""
    a, b = make_limiter(max_in_flight=4), make_limiter(max_in_flight=4)
    permits = [await a.acquire() for _ in range(4)]
    for permit in permits[:2]:
        permit.admitted()
    await _settle()
    permits[3].release("throttled")  # limit 4 -> min(4 / 2, 2 admitted) = 2
    await _settle()
    permits[2].release("failed")
    await _settle()
    # Two in flight, limit 2: b must wait until one is released.
    blocked = asyncio.create_task(b.acquire())
    await asyncio.sleep(0.05)
    assert not blocked.done()
    permits[0].release("completed")  # limit 2 -> 2.5: still 2 slots, one now free
    granted = await asyncio.wait_for(blocked, 10)
    permits[1].release("completed")
    granted.release("completed")
    for _ in range(30):
        (await b.acquire()).release("completed")
    await _settle()
    held = [await b.acquire() for _ in range(4)]  # back at the ceiling of 4
    for permit in held:
        permit.release("completed")


async def test_requests_per_minute_are_shared(make_limiter: MakeLimiter) -> None:
    """With requests_per_minute=3 the fourth request waits (about 20 s) whichever client asks."""
    a, b = make_limiter(requests_per_minute=3), make_limiter(requests_per_minute=3)
    for limiter in (a, b, a):
        (await limiter.acquire()).release("completed")
    fourth = asyncio.create_task(b.acquire())
    await asyncio.sleep(0.1)
    assert not fourth.done()
    fourth.cancel()
    with pytest.raises(asyncio.CancelledError):
        await fourth


async def test_tokens_per_minute_count_usage_of_completed_attempts(
    make_limiter: MakeLimiter,
) -> None:
    """Usage reported at release drains the token bucket; below zero, new requests wait."""
    a, b = make_limiter(tokens_per_minute=1000), make_limiter(tokens_per_minute=1000)
    (await a.acquire()).release("completed", tokens=600)
    await _settle()
    (await b.acquire()).release("completed", tokens=600)  # still 400 left: it may start
    await _settle()
    waiting = asyncio.create_task(a.acquire())
    await asyncio.sleep(0.1)
    assert not waiting.done()  # -200 tokens: about 12 s until the bucket is positive again
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting


def test_bad_limits_fail_at_construction() -> None:
    """Limits must be positive ints or None; a Redis name must be usable in a key."""
    with pytest.raises(TypeError):
        Limiter.local(max_in_flight=2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_in_flight"):
        Limiter.local(max_in_flight=0)
    with pytest.raises(ValueError, match="requests_per_minute"):
        Limiter.local(requests_per_minute=-1)
    with pytest.raises(ValueError, match="name"):
        Limiter.redis("redis://127.0.0.1:1", "")
    with pytest.raises(ValueError, match="redis://"):
        Limiter.redis("127.0.0.1:6379", "x")
    assert isinstance(Limiter.local(), LocalLimiter)


async def test_local_permit_release_is_idempotent() -> None:
    """Releasing a permit twice gives back one slot only."""
    limiter = Limiter.local(max_in_flight=2)
    assert isinstance(limiter, LocalLimiter) and limiter.engine is not None
    permit: Permit = await limiter.acquire()
    other = await limiter.acquire()
    permit.release("completed")
    permit.release("completed")
    assert limiter.engine.in_flight == 1
    other.release("failed")
    assert limiter.engine.in_flight == 0


async def test_redis_slots_of_a_crashed_process_expire(redis_server: RedisServer) -> None:
    """Slots never released (their process died) stop counting after slot_ttl seconds."""
    name = f"t{uuid.uuid4().hex[:8]}"
    crashed = RedisLimiter(redis_server.url, name, max_in_flight=2, slot_ttl=0.3)
    await crashed.acquire()
    await crashed.acquire()
    assert crashed._heartbeat is not None
    crashed._heartbeat.cancel()  # the process "dies": nothing renews or releases its slots
    crashed._held.clear()
    await crashed.aclose()
    survivor = RedisLimiter(redis_server.url, name, max_in_flight=2, slot_ttl=0.3)
    try:
        permit = await asyncio.wait_for(survivor.acquire(), 10)
        permit.release("completed")
    finally:
        await survivor.aclose()


async def test_redis_heartbeat_keeps_long_held_slots(redis_server: RedisServer) -> None:
    """A slot held longer than slot_ttl by a live process keeps counting (it is renewed)."""
    name = f"t{uuid.uuid4().hex[:8]}"
    holder = RedisLimiter(redis_server.url, name, max_in_flight=1, slot_ttl=0.3)
    other = RedisLimiter(redis_server.url, name, max_in_flight=1, slot_ttl=0.3)
    try:
        permit = await holder.acquire()
        blocked = asyncio.create_task(other.acquire())
        await asyncio.sleep(1.0)  # more than three TTLs
        assert not blocked.done()
        permit.release("completed")
        (await asyncio.wait_for(blocked, 10)).release("completed")
    finally:
        await holder.aclose()
        await other.aclose()


async def test_unreachable_redis_limiter_is_a_store_error() -> None:
    """Acquiring from a Redis nobody listens on raises StoreError."""
    limiter = Limiter.redis(f"redis://127.0.0.1:{free_port()}/0", "x", max_in_flight=1)
    try:
        with pytest.raises(StoreError):
            await limiter.acquire()
    finally:
        await limiter.aclose()
