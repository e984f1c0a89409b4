"""Wall time of the default study (`make run`) from an empty cache, and of a rerun.

Usage::

    python benchmarks/study_time.py                       # the default study, twice
    python benchmarks/study_time.py experiment=tiny       # any study overrides
    python benchmarks/study_time.py --out results/study_time.json

Each run is ``splitbench-study`` in a fresh project root (SPLITBENCH_ROOT, its own empty point
cache), so the first run simulates every point and the second reads them all from the cache;
both include the report, as `make run` does. Written (one JSON object, also printed): wall
seconds of both runs, the machine's CPU count and load average before and after (a busy
machine reads as a load above its CPU count), the study's own counts (simulated, cached) from
its study.json, the overrides and the code commit. The README's timings are ranges of these
figures over quiet and busy machines.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common.atomic import write_json_atomic  # noqa: E402


def _run(root: Path, overrides: list[str]) -> dict:
    exe = Path(sys.executable).parent / "splitbench-study"
    env = {**os.environ, "SPLITBENCH_ROOT": str(root)}
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    p = subprocess.run([str(exe), *overrides], cwd=root, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        tail = (p.stderr.strip().splitlines() or ["?"])[-1]
        raise SystemExit(f"error: splitbench-study exited {p.returncode}: {tail}")
    metas = sorted(root.glob("results/study/*/study.json"))
    sims = json.loads(metas[-1].read_text())["simulations"] if metas else {}
    return {
        "wall_s": round(wall, 1),
        "load_before": [round(x, 2) for x in load0],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "simulated": sims.get("evaluated"),
        "cached": sims.get("cache_hits"),
        "study_wall_s": json.loads(metas[-1].read_text()).get("wall_s") if metas else None,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("overrides", nargs="*", help="splitbench-study overrides")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "study_time.json"))
    args = ap.parse_args(argv)
    try:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        commit = ""
    with tempfile.TemporaryDirectory(prefix="splitbench-study-time-") as tmp:
        root = Path(tmp)
        cold = _run(root, args.overrides)
        print(f"empty cache: {cold['wall_s']} s (load {cold['load_before'][0]})", flush=True)
        warm = _run(root, args.overrides)
        print(f"rerun:       {warm['wall_s']} s (load {warm['load_before'][0]})", flush=True)
    out = {
        "overrides": args.overrides,
        "cold": cold,
        "rerun": warm,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "commit": commit,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    write_json_atomic(args.out, out)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
