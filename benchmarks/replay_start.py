"""How long the simulator takes to start: ``import replay`` and a trivial ``splitbench-replay``
run, beside a bare ``python -c pass`` and ``import pandas`` in the same run (ratios, since these
shared 2-core machines are noisy). Prints one table; ``--json FILE`` writes the numbers.

    python benchmarks/replay_start.py [--repeats 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def _time(cmd: list[str], cwd: str) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        cases = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "import pandas": [sys.executable, "-c", "import pandas"],
            "import replay": [sys.executable, "-c", "import replay, replay.simulate"],
            "splitbench-replay (1 machine, 20 requests)": [
                str(BIN / "splitbench-replay"),
                "design=baseline-h100",
                "design.machines=1",
                "trace.resample_rate=2",
                "trace.resample_requests=20",
                "progress=false",
            ],
        }
        rows = {}
        for name, cmd in cases.items():
            ts = [_time(cmd, tmp) for _ in range(args.repeats)]
            rows[name] = {"median_s": statistics.median(ts), "min_s": min(ts), "max_s": max(ts)}
    base = rows["import pandas"]["median_s"]
    print(f"{'case':<46} {'median s':>9} {'min s':>7} {'max s':>7} {'x pandas':>9}")
    for name, r in rows.items():
        print(
            f"{name:<46} {r['median_s']:9.2f} {r['min_s']:7.2f} {r['max_s']:7.2f} "
            f"{r['median_s'] / base:9.2f}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
