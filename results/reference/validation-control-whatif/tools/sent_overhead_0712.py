"""The ``sent-overhead`` what-ifs of 2026-12-07: a copy of a published validation folder made
with the sentinel in ``scale`` mode (the model before 8 Dec 2026), with each rung's sentinel
excess, ``probe gap x (factor - 1)``, added to ``serving.iteration_s`` and its speed factor set
to 1 (what ``simulate.speed_sentinel_as=overhead`` does: experiments.validation.sentinel).

    python sent_overhead_0712.py <published folder> <copy>
    python -m experiments.validation.what_if <copy> <out> baseline:serving.delivery_s=0 [...]

(``what_if`` needs one override; ``serving.delivery_s=0`` changes nothing.) The published
folder of 7 Dec 2026 is ``results/reference/validation/`` at commit ded3b7e."""

import csv
import sys
from pathlib import Path

from _copy import copy_published


def main(pub: Path, dst: Path) -> None:
    probe_ms = {}
    for r in csv.DictReader(open(pub / "drift.csv")):
        if r["what"] == "sentinel":  # "8 streams: X ms vs P ms at the probes; ..."
            probe_ms[r["design"]] = float(r["note"].split(" vs ")[1].split(" ms")[0])

    def edit(s: dict, design: str, load: str) -> dict:
        excess = probe_ms[design] * 1e-3 * (s["speed_factor"] - 1.0)
        d0 = 0.0
        ov = []
        for o in s["overrides"]:
            if o.startswith("serving.iteration_s="):
                d0 = float(o.split("=")[1])
            else:
                ov.append(o)
        s["overrides"] = [*ov, f"serving.iteration_s={max(0.0, d0 + excess):.6g}"]
        s["speed_factor"] = 1.0
        return s

    copy_published(pub, dst, edit)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
