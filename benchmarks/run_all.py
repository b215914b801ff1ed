"""Run every benchmark in turn (each starts its own emulator process) and print their results.

Run with: python benchmarks/run_all.py [--uvloop]   (about four minutes on 2 cores)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = [
    "cpu_per_event.py",
    "cpu_per_turn.py",
    "fan_out_wall.py",
    "floor.py",
    "peak_rss.py",
    "break_latency.py",
    "conversation_memory.py",
    "ttft.py",
    "pool_width.py",
]


def main() -> None:
    extra = sys.argv[1:]
    failed = []
    for script in SCRIPTS:
        print(f"== {script} {' '.join(extra)}".rstrip(), flush=True)
        if subprocess.run([sys.executable, str(HERE / script), *extra], check=False).returncode:
            failed.append(script)
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
