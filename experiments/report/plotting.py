"""What every report figure shares: saving (PNG/SVG/PDF plus the figure's data as CSV), the
seaborn style, one colour per design, faceted line plots and readable log axes.

seaborn/matplotlib are imported inside the functions only (the report's inputs and markdown
stay importable without them)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from common.atomic import atomic_path, write_text_atomic

METRIC_LABEL = {"ttft_s": "TTFT (s)", "tbt_s": "TBT (s, token-weighted)", "e2e_s": "E2E (s)"}

DESIGN_ORDER = (
    "Baseline-A100",
    "Baseline-H100",
    "Splitwise-AA",
    "Splitwise-HH",
    "Splitwise-HA",
    "Splitwise-HHcap",
    "Baseline-H200",
    "Splitwise-H200",
)

#: Okabe-Ito: distinguishable with every common colour-vision deficiency
OKABE_ITO = {
    "blue": "#0072B2",
    "sky": "#56B4E9",
    "orange": "#E69F00",
    "vermillion": "#D55E00",
    "green": "#009E73",
    "yellow": "#F0E442",
    "purple": "#CC79A7",
    "grey": "#999999",
    "black": "#000000",
}


#: figure file formats and the PNG resolution a report takes
FORMATS = ("png", "svg", "pdf")
DPI_RANGE = (10, 2400)


def check_figure_options(formats: Sequence[str], dpi: int) -> None:
    """ExperimentError (naming the config key) for a format :class:`Figures` cannot write or a
    resolution out of :data:`DPI_RANGE`."""
    from experiments.errors import ExperimentError

    for f in formats:
        if f not in FORMATS:
            raise ExperimentError(f"formats: unknown format '{f}' ({', '.join(FORMATS)})")
    lo, hi = DPI_RANGE
    if not lo <= dpi <= hi:
        raise ExperimentError(f"dpi: must be from {lo} to {hi} (dots per inch), got {dpi}")


class Figures:
    """Saves figures as PNG/SVG with their data as CSV, and remembers every file it wrote (the
    report removes the rest of its figures folder: nothing stale stays beside a new report)."""

    def __init__(self, out_dir: Path, formats: Sequence[str] = ("png", "svg"), dpi: int = 110):
        self.dir = out_dir
        self.formats = tuple(formats)
        self.dpi = dpi
        self.written: set[Path] = set()
        (out_dir / "figures").mkdir(parents=True, exist_ok=True)

    def csv(self, data: pd.DataFrame, name: str) -> Path:
        path = self.dir / "figures" / f"{name}.csv"
        atomic_csv(data, path)
        self.written.add(path)
        return path

    def save(self, fig, name: str, data: pd.DataFrame) -> str:
        import matplotlib.pyplot as plt

        self.csv(data, name)
        for fmt in self.formats:
            path = self.dir / "figures" / f"{name}.{fmt}"  # names may hold dots (overrides)
            meta = (
                {"Date": None} if fmt == "svg" else ({"Software": None} if fmt == "png" else None)
            )
            with atomic_path(path) as tmp:
                fig.savefig(tmp, format=fmt, dpi=self.dpi, bbox_inches="tight", metadata=meta)
            self.written.add(path)
        plt.close(fig)
        first = self.formats[0] if self.formats else "png"
        return f"figures/{name}.{first}"

    def remove_stale(self) -> list[Path]:
        """Delete the files of ``figures/`` this report did not write; returns them."""
        gone = []
        for p in sorted((self.dir / "figures").iterdir()):
            if p.is_file() and p not in self.written:
                p.unlink()
                gone.append(p)
        return gone


def atomic_csv(df: pd.DataFrame, path: Path) -> None:
    write_text_atomic(path, df.to_csv(index=False, float_format="%.6g", lineterminator="\n"))


def style():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    import seaborn as sns

    plt.rcParams["svg.hashsalt"] = "splitbench"
    sns.set_theme(style="whitegrid", context="paper")
    return plt, sns


def line_facets(
    data: pd.DataFrame,
    *,
    x: str,
    y: str,
    hue: str,
    col: str,
    labels: tuple[str, str],
    aspect: float = 1.2,
    sharey: bool = True,
    per_panel=None,
    **kw,
):
    """Lines of ``y`` over ``x`` (no aggregation), one panel per value of ``col``, each with its
    own x axis and titled by that value; ``labels`` are the x and y axis labels. ``per_panel(ax)``
    draws on each panel before the labels are set (seaborn labels only unlabelled axes). Call
    after ``style()``; returns the FacetGrid."""
    import seaborn as sns

    g = sns.relplot(
        data=data,
        kind="line",
        estimator=None,
        errorbar=None,
        x=x,
        y=y,
        hue=hue,
        col=col,
        facet_kws={"sharex": False, "sharey": sharey},
        height=3.0,
        aspect=aspect,
        **kw,
    )
    if per_panel is not None:
        for ax in g.axes.flat:
            per_panel(ax)
    g.set_titles("{col_name}")
    g.set_axis_labels(*labels)
    return g


def palette(names) -> dict:
    """The same colour-blind-safe colour for the same design in every figure."""
    import seaborn as sns

    known = list(DESIGN_ORDER)
    extra = sorted(set(names) - set(known))
    n = len(known) + len(extra)
    colors = sns.color_palette("colorblind", n)
    return {name: colors[i] for i, name in enumerate(known + extra)}


def hue_order(names) -> list:
    present = set(names)
    return [n for n in DESIGN_ORDER if n in present] + sorted(present - set(DESIGN_ORDER))


def _plain(v, _pos=None) -> str:
    return f"{v:g}"


def log_axis(axes, which: str = "x") -> None:
    """Log scale with readable ticks written as plain numbers: 1, 2 and 5 of every decade, or
    every 1..9 of a decade when that gives too few, or a few evenly spaced ticks when the data
    span only a small part of a decade."""
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter, NullLocator

    for ax in axes:
        axis = ax.xaxis if which == "x" else ax.yaxis
        (ax.set_xscale if which == "x" else ax.set_yscale)("log")
        ax.autoscale_view()
        lo, hi = sorted(ax.get_xlim() if which == "x" else ax.get_ylim())
        ks = range(int(math.floor(math.log10(lo))), int(math.ceil(math.log10(hi))) + 1)
        major = None
        for subs in ((1, 2, 5), tuple(range(1, 10))):
            n = sum(lo <= m * 10.0**k <= hi for k in ks for m in subs)
            if 3 <= n <= 12:
                major = LogLocator(base=10, subs=tuple(float(m) for m in subs))
                break
        if major is not None:
            axis.set_major_locator(major)
            axis.set_minor_locator(LogLocator(base=10, subs=tuple(range(1, 10))))
        else:
            axis.set_major_locator(MaxNLocator(nbins=4))
            axis.set_minor_locator(NullLocator())
        axis.set_major_formatter(FuncFormatter(_plain))
        axis.set_minor_formatter(NullFormatter())
