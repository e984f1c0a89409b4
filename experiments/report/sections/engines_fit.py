"""The held-out check of the composed profiles, shown in the section "Does phase splitting pay
with today's engines?": the composed tables plus their fitted engine overhead, each measured
serving point of AIConfigurator's ``silicon_sample.csv`` simulated as a closed loop at its
concurrency, the error on points left out of the overhead fit (one prompt/output shape, one
concurrency or one GPU at a time). The table is ``characterize/modeling/data/composed/
held_out.csv``, written by ``python -m characterize.modeling.compose.build --refit``; this module
only shows it."""

from __future__ import annotations

import pandas as pd

from characterize.modeling.compose.overhead import COMPOSED_DIR
from experiments.report.format import md_rows

HELD_OUT_CSV = COMPOSED_DIR / "held_out.csv"
OVERHEAD_CSV = COMPOSED_DIR / "overhead.csv"
#: the schemes shown, in order, and their column titles
SCHEMES = {
    "in-sample": "in-sample (the committed tables)",
    "leave-one-shape-out": "shape held out",
    "leave-one-concurrency-out": "concurrency held out",
    "leave-one-gpu-out": "GPU held out",
    "no overhead": "no overhead (operators only)",
}
#: the issue's targets on held-out groups: mean |error| of TPOT within 10%, of TTFT within 20%
TARGETS = {"tpot": 10.0, "ttft": 20.0}


def _cell(r: pd.Series) -> str:
    tpot, ttft = float(r["tpot_mape_%"]), float(r["ttft_mape_%"])
    text = f"{tpot:.1f} / {ttft:.1f}"
    miss = tpot > TARGETS["tpot"] or ttft > TARGETS["ttft"]
    return f"**{text}**" if miss else text


def held_out_rows(t: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """(header, rows): one row per engine and GPU with measured points, one cell per scheme."""
    header = ["engine", "GPU", "points", *SCHEMES.values()]
    rows = []
    for (engine, gpu), g in t.groupby(["engine", "gpu"], sort=True):
        by = g.set_index("scheme")
        if not set(SCHEMES) & set(by.index):
            continue
        n = (
            int(by.loc["in-sample", "points"])
            if "in-sample" in by.index
            else int(g["points"].max())
        )
        rows.append(
            [engine, gpu, str(n)] + [_cell(by.loc[s]) if s in by.index else "-" for s in SCHEMES]
        )
    return header, rows


def overhead_rows(t: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """(header, rows): the overhead fitted on each engine's and GPU's own measured points (rows
    borrowed from another engine or GPU are left out)."""
    header = ["engine", "GPU", "kernel scale", "per step (ms)", "per request (ms)",
              "per prefill (ms)", "points"]  # fmt: skip
    fitted = t[t["points"] > 0].sort_values(["engine", "gpu"])
    rows = [[r.engine, r.gpu, f"{r.kernel_scale:.2f}", f"{r.step_ms:.2f}",
             f"{r.per_request_ms:.3f}", f"{r.per_prefill_ms:.1f}", str(int(r.points))]
            for r in fitted.itertuples(index=False)]  # fmt: skip
    return header, rows


def _overhead_part(path) -> list[str]:
    try:
        t = pd.read_csv(path)
    except FileNotFoundError:
        return []
    header, rows = overhead_rows(t)
    if not rows:
        return []
    return [
        "The overhead fitted on each GPU's own points (iteration = kernel scale x operator sum "
        "+ per step + per request x batch, + per prefill when the iteration prefills): with a "
        "GPU held out, that GPU is predicted with the fit of the engine's other GPUs, and the "
        "fits below differ between GPUs; the in-sample column, each GPU with its own fit, is what the committed tables use. "
        f"Data: `{path.relative_to(COMPOSED_DIR.parents[3])}`.",
        "",
        md_rows(header, rows, [False, False] + [True] * (len(header) - 2)),
        "",
    ]


def held_out_section(path=HELD_OUT_CSV, overhead_path=OVERHEAD_CSV) -> list[str]:
    """The subsection (nothing when the table is absent)."""
    try:
        t = pd.read_csv(path)
    except FileNotFoundError:
        return []
    header, rows = held_out_rows(t)
    if not rows:
        return []
    return [
        "### Composed profiles against measured serving points",
        "",
        "How far the composed tables (with their fitted per-engine overhead) are from "
        "AIConfigurator's measured serving points (`silicon_sample.csv`: dense Llama-3.1-70B, "
        "fp8, prompt/output 1k/1k, 1k/8k, 8k/1k, concurrency 4-128), each point simulated as a "
        "closed loop at its concurrency with the engine's scheduler: mean absolute error in %, "
        "TPOT / TTFT, on the points left out of the overhead fit (one group at a time). Targets "
        f"on held-out groups: TPOT within {TARGETS['tpot']:.0f}%, TTFT within "
        f"{TARGETS['ttft']:.0f}%; a miss is in bold. Engines and GPUs without measured points "
        "(SGLang; A100; TensorRT-LLM on H100) borrow the nearest fitted overhead and are not in "
        f"this table. Data: `{HELD_OUT_CSV.relative_to(COMPOSED_DIR.parents[3])}`.",
        "",
        md_rows(header, rows, [False, False] + [True] * (len(header) - 2)),
        "",
        *_overhead_part(overhead_path),
    ]
