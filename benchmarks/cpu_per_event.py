"""Client CPU per streamed text event on a 20,000-event reply: SDK vs the raw aioboto3 loop.

Run with: python benchmarks/cpu_per_event.py [--uvloop] [--instrument] [--rounds 7] [--events 20000]
Target: ratio SDK / raw <= 0.35.
"""

from __future__ import annotations

from _common import (
    MODEL,
    instrument_if,
    parser,
    raw_config,
    raw_turn,
    report,
    run,
    server,
    session,
    timed,
)

from aiostream_chat import AsyncConversation


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--events", type=int, default=20_000)
    args = p.parse_args()
    instrument_if(args)
    rounds = args.rounds or 7
    prompt = f"bench n={args.events} delay=0"

    async def bench() -> None:
        sdk_us: list[float] = []
        raw_us: list[float] = []
        with server() as url:
            async with (
                session().client(
                    "bedrock-runtime", endpoint_url=url, config=raw_config()
                ) as client,
                AsyncConversation(MODEL, session=session(), endpoint_url=url) as conv,
            ):

                async def sdk() -> int:
                    n = 0
                    # A fork per turn: the history (and so the request) stays the same size.
                    async for _ in conv.fork().stream(prompt):
                        n += 1
                    return n

                async def raw() -> int:
                    return (await raw_turn(client, prompt))[1]

                await sdk(), await raw()  # warm up both clients and connections
                for _ in range(rounds):
                    c, _w, n = await timed(sdk)
                    assert n == args.events, n
                    sdk_us.append(c / n * 1e6)
                    c, _w, n = await timed(raw)
                    assert n == args.events, n
                    raw_us.append(c / n * 1e6)
        report("CPU per text event", "us", sdk_us, raw_us, "target <= 0.35")

    run(bench, args.uvloop)


if __name__ == "__main__":
    main()
