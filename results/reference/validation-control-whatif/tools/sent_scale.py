"""The ``sent-scale`` what-if of 2026-12-08: a copy of a published validation folder made with
``simulate.speed_sentinel_as=overhead`` (the default since 8 Dec 2026), each rung simulated as
the ``scale`` mode does: the measured delta0 (``serving.csv``) and every engine time times the
rung's sentinel factor (``drift.csv``).

    python sent_scale.py <published folder> <copy>
    python -m experiments.validation.what_if <copy> <out> baseline:serving.delivery_s=0"""

import csv
import sys
from pathlib import Path

from _copy import copy_published


def main(pub: Path, dst: Path) -> None:
    fac = {(r["design"], r["load"]): float(r["value"])
           for r in csv.DictReader(open(pub / "drift.csv")) if r["what"] == "sentinel"}  # fmt: skip
    d0 = {r["design"]: float(r["value"])
          for r in csv.DictReader(open(pub / "serving.csv")) if r["term"] == "iteration_s"}  # fmt: skip

    def edit(s: dict, design: str, load: str) -> dict:
        ov = [o for o in s["overrides"] if not o.startswith("serving.iteration_s=")]
        if d0.get(design):
            ov.append(f"serving.iteration_s={d0[design]:.6g}")
        s["overrides"] = ov
        s["speed_factor"] = fac[(design, load)]
        return s

    copy_published(pub, dst, edit)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
