"""``load``: the source's best configuration at rates ``factors`` x its max rate (load curves:
latency, SLO attainment and goodput below and past the max rate)."""

from __future__ import annotations

from experiments.provision import SearchLog
from experiments.study.kinds.base import DependentKind
from experiments.study.kinds.rows import machine_columns, slo_attainment


class LoadKind(DependentKind):
    name = "load"

    def from_best(self, ctx, task, ev, pools, best, src_rate, grid) -> dict:
        log = SearchLog(ev)
        rates = sorted({grid.rates[grid.index_near(f * src_rate)] for f in task.factors})
        for r in rates:
            log.met(tuple(best), r)
        return {"best": best, "rate": src_rate, "factors": list(task.factors),
                "points": log.points}  # fmt: skip

    def rows(self, task, res, pools, base, tables) -> None:
        for p in res["points"]:
            tables["load"].append({**base, **_load_row(task.design, p, res["source_rate"])})


def _load_row(design, p: dict, max_rate: float) -> dict:
    r = p["result"]
    return {
        **machine_columns(design, list(p["counts"])),
        "rate": p["rate"],
        "load_factor": p["rate"] / max_rate if max_rate else None,
        "status": "failed" if r.get("error") else "ok",
        "slo_met": None if r.get("error") else p["slo_met"],
        "slo_worst_ratio": r.get("slo_worst_ratio"),
        "slo_attainment": slo_attainment(r),
        "throughput_rps": r.get("throughput_rps"),
        "goodput_rps": r.get("goodput_rps"),
        **{f"{m}_p99_s": (r.get(f"{m}_s") or {}).get("p99") for m in ("ttft", "tbt", "e2e")},
        **{f"{m}_p50_s": (r.get(f"{m}_s") or {}).get("p50") for m in ("ttft", "tbt", "e2e")},
        "preemptions": r.get("preemptions"),
        "error": r.get("error"),
    }
