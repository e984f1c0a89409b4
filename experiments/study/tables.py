"""The study tables' contract: what ``splitbench-study`` writes and the report reads.

Each name is written once here: the tables (``<name>.csv`` in the study folder), the columns
the report relies on in each, the kinds of those columns, the headline baselines (the ratio
columns ``<metric>_vs_<baseline>``), the profile-set columns, the latency quantile levels and
the slowdown reference the SLO is measured against by default. The rows themselves are built
by each task kind (:mod:`experiments.study.kinds`) and :mod:`experiments.study.assemble`.
"""

from __future__ import annotations

from characterize.modeling.phase.model_set import REFERENCE_GPU, REFERENCE_TP

#: the latency quantile levels of latency_quantiles.csv and each point's ``quantiles``
#: (fractions; a point's result holds them, so they are the point's: experiments.point)
from experiments.point import QUANTILE_LEVELS as QUANTILE_LEVELS

#: the slowdown reference by default (the paper's DGX-A100, TP8; ``profiles.slo_reference_*``)
SLO_REFERENCE_GPU, SLO_REFERENCE_TP = REFERENCE_GPU, REFERENCE_TP
#: the headline comparisons: Splitwise designs against these baselines (ratio columns
#: ``max_rate_vs_<b>``, ``throughput_rps_vs_<b>``, ``cost_per_hour_vs_<b>``, ``power_w_vs_<b>``)
HEADLINE_BASELINES = ("baseline-a100", "baseline-h100")
#: the metrics compared with the headline baselines, per table
RATIO_METRICS = {"budget": ("max_rate", "throughput_rps"),
                 "iso_throughput": ("cost_per_hour", "power_w")}  # fmt: skip

#: the tables every study writes
TABLES = ("budget", "iso_throughput", "heatmap", "points")
#: the tables that only some studies fill (written when not empty)
OPTIONAL_TABLES = ("variants", "variant_ratios", "mismatch", "load", "batch")
#: the long-format latency table (every rate evaluated at each budget task's best configuration)
LATENCY_TABLE = "latency_quantiles"
#: every table a study folder may hold, in the order they are written
STUDY_TABLES = (*TABLES, *OPTIONAL_TABLES, LATENCY_TABLE)

#: the columns that name a row's profile set (studies with ``study.profile_sets`` only)
SET_COLUMNS = (
    "profile_set", "profile_set_text", "model", "profile_kinds", "slo_reference", "profiles_path"
)  # fmt: skip

#: the columns the report reads from each (non-empty) table; others are optional
TABLE_COLUMNS = {
    "budget": ("trace", "trace_display", "design", "design_display", "budget", "prompt_machines",
               "token_machines", "machines", "max_rate", "throughput_rps", "cost_per_hour",
               "power_w"),
    "iso_throughput": ("trace", "trace_display", "design", "design_display", "rate", "objective",
                       "prompt_machines", "token_machines", "machines", "cost_per_hour",
                       "power_w"),
    "heatmap": ("trace", "trace_display", "design", "design_display", "rate", "prompt", "token",
                "slo_met", "cost_per_hour"),
    "points": ("task", "trace", "design", "prompt_machines", "token_machines", "machines", "rate",
               "slo_met", "slo_worst_ratio"),
    "latency_quantiles": ("trace", "budgets", "rate", "best_rate", "metric", "quantile",
                          "value_s"),
    "variants": ("trace", "trace_display", "design", "design_display", "kind", "variant",
                 "group", "variant_label", "max_rate", "own_rate", "change"),
    "variant_ratios": ("variant", "group", "variant_label", "trace", "trace_display", "design",
                       "design_display", "vs", "ratio", "default_ratio", "change"),
    "mismatch": ("trace", "trace_display", "design", "design_display", "mismatch",
                 "source_trace", "max_rate", "own_rate", "change"),
    "load": ("trace", "trace_display", "design", "design_display", "rate", "load_factor",
             "slo_met", "slo_attainment", "ttft_p99_s", "tbt_p99_s", "e2e_p99_s"),
    "batch": ("trace", "trace_display", "design", "design_display", "offered_rate",
              "throughput_rps", "cost_per_hour", "power_w", "requests_per_dollar", "rps_per_kw",
              "slo_config", "best_requests_per_dollar", "best_rps_per_kw"),
}  # fmt: skip
#: the kinds of the columns above that hold numbers or True/False (what a study.json from before
#: its ``tables`` record is checked by; a newer study records every column's kind)
COLUMN_KINDS = {
    **dict.fromkeys(
        ("prompt_machines", "token_machines", "machines", "max_rate", "throughput_rps",
         "cost_per_hour", "power_w", "rate", "prompt", "token", "slo_worst_ratio", "best_rate",
         "quantile", "value_s", "own_rate", "change", "ratio", "default_ratio", "load_factor",
         "slo_attainment", "ttft_p99_s", "tbt_p99_s", "e2e_p99_s", "offered_rate",
         "requests_per_dollar", "rps_per_kw"),
        "number",
    ),
    **dict.fromkeys(("slo_met", "best_requests_per_dollar", "best_rps_per_kw"), "bool"),
}  # fmt: skip


def ratio_column(metric: str, baseline: str) -> str:
    """The column of ``metric`` over ``baseline``'s in the same group (``max_rate_vs_...``)."""
    return f"{metric}_vs_{baseline}"
