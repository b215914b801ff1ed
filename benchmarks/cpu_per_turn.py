"""Client CPU per short turn (request + a few events): SDK vs the raw aioboto3 loop.

Run with: python benchmarks/cpu_per_turn.py [--uvloop] [--instrument] [--rounds 11] [--turns 200]
Each round runs `--turns` sequential turns per side (alternating sides); a turn is one
ConverseStream request answered with 5 text deltas (9 events). Target: ratio <= 0.45.
The SDK side is bimodal between runs on this shared machine (+-15 %): read the median.
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

PROMPT = "bench n=5 delay=0"


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--turns", type=int, default=200)
    args = p.parse_args()
    instrument_if(args)
    rounds, turns = args.rounds or 11, args.turns

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
                    for _ in range(turns):
                        # A fork per turn keeps the history (and so the request) the same size.
                        async for _text in conv.fork().stream(PROMPT):
                            n += 1
                    return n

                async def raw() -> int:
                    n = 0
                    for _ in range(turns):
                        n += (await raw_turn(client, PROMPT))[1]
                    return n

                await sdk(), await raw()  # warm up both clients and connections
                for _ in range(rounds):
                    c, _w, n = await timed(sdk)
                    assert n == 5 * turns, n
                    sdk_us.append(c / turns * 1e6)
                    c, _w, n = await timed(raw)
                    assert n == 5 * turns, n
                    raw_us.append(c / turns * 1e6)
        report("CPU per short turn", "us", sdk_us, raw_us, "target <= 0.45")

    run(bench, args.uvloop)


if __name__ == "__main__":
    main()
