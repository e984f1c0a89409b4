"""Trace figures (seaborn, Agg backend). seaborn/matplotlib are imported inside the functions.

Every PNG is written atomically (temporary file in the same folder, then ``os.replace``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from common.atomic import atomic_path
from traces.schema import check_table
from traces.stats import S_PER_MINUTE


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="paper")
    return plt, sns


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight", metadata={"Software": None})
    return path


def arrival_counts(arrival_s, bin_s: float) -> pd.DataFrame:
    """Requests per fixed bin of ``bin_s`` seconds from time 0: columns ``time_s``, ``requests``."""
    a = np.asarray(arrival_s, dtype="float64")
    bins = np.floor(a / bin_s).astype("int64")
    counts = np.bincount(bins, minlength=int(bins.max()) + 1 if bins.size else 0)
    return pd.DataFrame({"time_s": np.arange(counts.size) * bin_s, "requests": counts})


def plot_trace(df: pd.DataFrame, out_dir: str | os.PathLike, name: str) -> list[Path]:
    """Write ``<name>_tokens_cdf.png`` and ``<name>_arrival_rate.png`` into ``out_dir``.

    - tokens CDF: empirical CDFs of prompt and output tokens (log x axis).
    - arrival rate: requests per second (1-s bins) and per minute (60-s bins), over time.

    Returns:
        The written paths.
    """
    t = check_table(df)
    plt, sns = _pyplot()
    out = Path(out_dir)
    written: list[Path] = []

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, col, label in zip(
        axes, ("prompt_tokens", "output_tokens"), ("prompt tokens", "output tokens"), strict=True
    ):
        sns.ecdfplot(x=t[col], ax=ax, log_scale=True)
        ax.set_xlabel(label)
        ax.set_ylabel("CDF")
    fig.suptitle(f"{name}: token counts ({len(t):,} requests)")
    written.append(_save(fig, out / f"{name}_tokens_cdf.png"))
    plt.close(fig)

    fig, axes = plt.subplots(2, 1, figsize=(9, 5), sharex=True)
    for ax, width, label in zip(
        axes, (1.0, S_PER_MINUTE), ("requests / second", "requests / minute"), strict=True
    ):
        counts = arrival_counts(t["arrival_s"], width)
        sns.lineplot(data=counts, x="time_s", y="requests", ax=ax, drawstyle="steps-post", lw=0.8)
        ax.set_ylabel(label)
    axes[-1].set_xlabel("time since trace start (s)")
    fig.suptitle(f"{name}: arrival rate over time")
    written.append(_save(fig, out / f"{name}_arrival_rate.png"))
    plt.close(fig)
    return written
