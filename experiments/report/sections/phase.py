"""The phase characterization: the profile table's points with the fitted phase model's curves,
the model's held-out error, and (reference profiles) how wrong a derived GPU profile is."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from experiments.report.format import md_table
from experiments.report.phase_figures import phase_figures
from experiments.report.plotting import Figures


def phase_section(figs: Figures, out: Path, profiles_source: str, model: str) -> list[str]:
    md = ["## Phase characterization", ""]
    try:
        figures, err = phase_figures(figs, profiles_source, model)
    except Exception as e:  # noqa: BLE001 - the rest of the report stands without it
        figures, err = [], pd.DataFrame()
        md += [f"Phase figures skipped: {type(e).__name__}: {str(e).splitlines()[0]}", ""]
    md += [
        f"Profile table `{profiles_source}` (points) and the fitted phase model "
        f"(lines), {model}, TP8.",
        "",
    ]
    for path, caption in figures:
        md += [f"![{path}]({path})", "", caption, ""]
    if not err.empty:
        keep = [
            c for c in ("gpu", "tp", "phase", "points", "mape", "max_error") if c in err.columns
        ]
        if "power_source" in err.columns:
            keep.append("power_source")
        e = err[keep].copy()
        figs.csv(err, "phase_model_errors")
        md += [
            "Phase model held-out error (fraction); power source `measured` or the A100 shape "
            "scaled (fallback):",
            "",
            md_table(
                e,
                [
                    (
                        c,
                        c,
                        ""
                        if not pd.api.types.is_numeric_dtype(e[c])
                        else ".3f"
                        if c in ("mape", "max_error")
                        else ".0f",
                    )
                    for c in keep
                ],
            ),
            "",
        ]
    if profiles_source == "reference":
        md += derivation_section(figs)
    return md


def derivation_section(figs: Figures) -> list[str]:
    """The held-out error of derived phase models (characterize.modeling.derive): each GPU's
    profile derived from the other's reference rows only, against its measured points."""
    from characterize.modeling.derive import reference_check

    err = reference_check()
    figs.csv(err, "derivation_errors")
    keep = ["from_gpu", "to_gpu", "model", "tp", "phase", "points", "mape", "max_error", "bias"]
    dec, pre = (err.loc[err["phase"] == p, "mape"] for p in ("decode", "prefill"))
    return [
        "### Derived phase models (GPUs nobody profiled)",
        "",
        "A GPU without a measured profile (H200, B200, ...) gets a phase model DERIVED from its "
        "spec and the efficiencies a profiled GPU achieved (`splitbench-profiles derive`); "
        "designs on such profiles are labelled `(derived)`. How wrong that is, measured by "
        "deriving each reference GPU from the other's rows only "
        "(`splitbench-profiles derive --check`; fractions):",
        "",
        md_table(
            err[keep], [(c, c, ".3f" if c in ("mape", "max_error", "bias") else "") for c in keep]
        ),  # fmt: skip
        "",
        f"Decode MAPE: mean {dec.mean():.1%}, worst {dec.max():.1%}; prefill: mean "
        f"{pre.mean():.1%}, worst {pre.max():.1%} (target 15% per phase). Where prefill misses "
        "it, the paper's engine reached a smaller share of the H100's bf16 peak than of the "
        "A100's, which no spec number predicts; a few measured points of the target GPU through "
        "the phase model's calibration would correct it.",
        "",
    ]
