"""NCCL all-reduce time inside one DGX node, from vidur's measured tables.

Data: ``characterize/modeling/data/reference/vidur-network/{a100_dgx,h100_dgx}/all_reduce.csv``
(microsoft/vidur @7d47513, MIT). Only rows with every worker on one node
(``devices_per_node == num_workers``) are used; ``size`` is bytes per GPU buffer and
``time_stats.all_reduce.median`` is in ms.

Model: per ``num_workers`` (the TP degree: 2, 4 or 8), sizes are grouped into bins of a quarter
octave (median size and median time per bin, to smooth run-to-run noise), made non-decreasing
in size (running maximum), and interpolated linearly in log(size)-log(time). Below the smallest
measured size the time is the smallest size's (latency bound); above the largest, it grows in
proportion to size (bandwidth bound).
"""

from __future__ import annotations

import bisect
import math
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd

from common.units import ms_to_s

NETWORK_DIR = Path(__file__).resolve().parent / "data" / "reference" / "vidur-network"
FAMILIES = ("a100", "h100")
TP_DEGREES = (2, 4, 8)


class NetworkError(ValueError):
    """An all-reduce query the tables cannot answer (one-line message)."""


def network_family(gpu: str) -> str:
    """The vidur table for a GPU name or family: a100* -> 'a100'; h100*, h200* -> 'h100'."""
    g = gpu.lower()
    if g.startswith("a100"):
        return "a100"
    if g.startswith(("h100", "h200")):
        return "h100"
    raise NetworkError(f"no all-reduce table for gpu '{gpu}' (known families: a100, h100, h200)")


@cache
def _curve(family: str, tp: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(log sizes, log seconds) knots for one family and TP degree."""
    path = NETWORK_DIR / f"{family}_dgx" / "all_reduce.csv"
    df = pd.read_csv(path)
    df = df[(df["num_workers"] == tp) & (df["devices_per_node"] == tp)]
    if df.empty:
        raise NetworkError(f"{path}: no single-node rows for num_workers={tp}")
    size = df["size"].to_numpy(dtype=float)
    t = df["time_stats.all_reduce.median"].to_numpy(dtype=float)
    ok = (size > 0) & (t > 0)
    size, t = size[ok], t[ok]
    bins = np.floor(np.log2(size) * 4).astype(np.int64)
    xs, ys = [], []
    for b in np.unique(bins):
        sel = bins == b
        xs.append(math.log(float(np.median(size[sel]))))
        ys.append(math.log(ms_to_s(float(np.median(t[sel])))))
    ys = list(np.maximum.accumulate(np.array(ys)))
    return tuple(xs), tuple(float(y) for y in ys)


def allreduce_time(gpu_family: str, tp: int, nbytes: float) -> float:
    """Seconds for one NCCL all-reduce of ``nbytes`` bytes per GPU among ``tp`` GPUs of a DGX.

    ``gpu_family`` is 'a100', 'h100', 'h200' or a GPU name starting with one of them (H200 uses
    the DGX-H100 table). ``tp`` 1 or ``nbytes`` <= 0 costs 0; ``tp`` must otherwise be 2, 4 or 8.
    """
    family = network_family(gpu_family)
    tp = int(tp)
    if tp == 1 or nbytes <= 0:
        return 0.0
    if tp not in TP_DEGREES:
        raise NetworkError(f"no all-reduce table for tp={tp} (known: 2, 4, 8)")
    xs, ys = _curve(family, tp)
    x = math.log(nbytes)
    if x <= xs[0]:
        return math.exp(ys[0])
    if x >= xs[-1]:
        return math.exp(ys[-1] + (x - xs[-1]))
    i = bisect.bisect_right(xs, x)
    x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
    return math.exp(y0 + (y1 - y0) * (x - x0) / (x1 - x0))
