"""The study tables (plain lists of dicts, :mod:`experiments.study.tables` names them) from the
tasks' results: each task kind adds its rows; then every table is sorted and the ratio columns
(each design over the headline baselines) are added."""

from __future__ import annotations

from experiments.provision import Pool, cost_of, power_of
from experiments.study.kinds import kind_of
from experiments.study.kinds.batch import best_batch
from experiments.study.kinds.rows import machine_columns, prefix_columns
from experiments.study.kinds.variants import add_own_rate, variant_ratios
from experiments.study.tables import (
    HEADLINE_BASELINES,
    OPTIONAL_TABLES,
    RATIO_METRICS,
    SET_COLUMNS,
    TABLES,
    ratio_column,
)
from experiments.study.task import Task, labels_text


def assemble(cfg: dict, tasks: list[Task], results: list[dict]) -> dict:
    """Study tables (plain lists of dicts) from task results."""
    design_display = {k: (d.display or k) for k, d in cfg["designs"].items()}
    trace_display = {k: (t.display or k) for k, t in cfg["traces"].items()}
    tables: dict[str, list[dict]] = {t: [] for t in (*TABLES, *OPTIONAL_TABLES)}
    for task, res in zip(tasks, results, strict=True):
        pools = [Pool(**p) for p in res["pools"]]
        tables["points"] += point_rows(task, res, pools)
        base = {
            "trace": task.trace_key,
            "trace_display": trace_display[task.trace_key],
            "design": task.design_key,
            "design_display": task.design.display or design_display[task.design_key],
            "kind": task.design.kind,
            **{k: task.labels[0][k] for k in SET_COLUMNS if task.labels and k in task.labels[0]},
        }
        kind_of(task).rows(task, res, pools, base, tables)
    _order(cfg, tables)
    st = cfg["study"]
    sets = ("profile_set",) if st.profile_sets else ()  # ratios within one set
    for key in RATIO_METRICS["budget"]:
        add_ratios(tables["budget"], key=key, group=("trace", "budget", *sets))
    for key in RATIO_METRICS["iso_throughput"]:
        add_ratios(tables["iso_throughput"], key=key, group=("trace", "objective", *sets))
    add_own_rate(tables["mismatch"], tables["budget"])
    add_own_rate(tables["variants"], tables["budget"])
    best_batch(tables["batch"])
    tables["variant_ratios"] = variant_ratios(tables["variants"], tables["budget"], st)
    return tables


def point_rows(task: Task, res: dict, pools: list[Pool]) -> list[dict]:
    """One points.csv row per point the task looked at."""
    rows = []
    for p in res.get("points", []):
        r = p["result"]
        c = list(p["counts"])
        rows.append(
            {
                "task": task.kind,
                "labels": labels_text(task),
                "trace": task.trace_key,
                "design": task.design_key,
                **{k: task.labels[0][k] for k in SET_COLUMNS[:1] if k in task.labels[0]},
                **machine_columns(task.design, c),
                "rate": p["rate"],
                "status": "failed" if r.get("error") else "ok",
                "slo_met": None if r.get("error") else p["slo_met"],
                "throughput_rps": r.get("throughput_rps"),
                "slo_worst_ratio": r.get("slo_worst_ratio"),
                "cost_per_hour": cost_of(pools, tuple(c)),
                "power_w": power_of(pools, tuple(c)),
                "error": r.get("error"),
                "key": r.get("_key"),
                **{f"slowdown_{k}": v for k, v in (r.get("slowdown") or {}).items()},
                "trace_requests": r.get("trace_requests"),
                **{f"context_{k}": v for k, v in (r.get("context") or {}).items()},
                **prefix_columns(r),
            }
        )
    return rows


def _order(cfg: dict, tables: dict) -> None:
    """Sort the tables' rows by trace, budget, profile set, objective and design (each in the
    study config's order)."""
    st = cfg["study"]
    designs = [*st.designs, *st.extra_designs, *(d for p in st.profile_sets for d in p.designs)]
    order = {k: i for i, k in enumerate(dict.fromkeys(designs))}
    t_order = {k: i for i, k in enumerate(st.traces)}
    b_order = {b.name: i for i, b in enumerate(st.budgets)}
    s_order = {p.name: i for i, p in enumerate(st.profile_sets, start=1)}  # own set: 0

    def sort_key(r):
        return (
            t_order.get(r["trace"], 99),
            b_order.get(r.get("budget"), 99),
            s_order.get(r.get("profile_set"), 0),
            str(r.get("objective", "")),
            order.get(r["design"], 99),
        )

    for name in ("budget", "iso_throughput", "variants", "mismatch", "load", "batch"):
        tables[name].sort(key=sort_key)


def add_ratios(rows: list[dict], key: str, group: tuple[str, ...]) -> None:
    """``<key>_vs_<baseline>``: each row's value over the baseline's in the same group."""
    for bl in HEADLINE_BASELINES:
        ref = {tuple(r[g] for g in group): r.get(key) for r in rows if r["design"] == bl}
        for r in rows:
            v, b = r.get(key), ref.get(tuple(r[g] for g in group))
            r[ratio_column(key, bl)] = (v / b) if (v is not None and b) else None


def latency_rows(results: list[dict], tasks: list[Task]) -> list[dict]:
    """Long-format latency quantiles (each budget task's best configuration, every rate
    evaluated there: :meth:`~experiments.study.kinds.budget.BudgetKind.latency_rows`)."""
    return [
        row
        for task, res in zip(tasks, results, strict=True)
        for row in kind_of(task).latency_rows(task, res)
    ]
