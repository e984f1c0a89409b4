"""The engine's speed over the run (drift.csv): each design's profile against the first design's,
and every rung's speed sentinel (:mod:`experiments.validation.sentinel`)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from experiments.validation.report.error_sections import replay_records

DRIFT_COLUMNS = ["design", "what", "load", "repeat", "value", "n", "note"]


def _profile(src: str | None) -> pd.Series | None:
    try:
        df = pd.read_csv(src)
    except (OSError, ValueError, TypeError):
        return None
    return df.set_index(["phase", "batch_size", "tokens_per_request"])["latency_s"]


def drift_rows(c, steps, loads) -> list[dict]:
    """``profile_ratio`` rows (per design: median over the common points of its profile's
    latency over the first design's, when the designs were profiled apart) and ``sentinel``
    rows (per real run: the speed factor, the sentinel's median gap over the probes')."""
    rows: list[dict] = []
    first = None  # (design, profile source, latencies)
    for design in c.designs:
        src = (steps.results.get(f"fit-{design}") or {}).get("source")
        p = _profile(src)
        if p is None:
            continue
        if first is None:
            first = (design, src, p)
            continue
        common = p.index.intersection(first[2].index)
        if len(common) and src != first[1]:
            r = (p[common] / first[2][common]).to_numpy(dtype=float)
            rows.append({"design": design, "what": "profile_ratio", "load": "", "repeat": "",
                         "value": float(np.median(r)), "n": int(len(r)),
                         "note": f"vs {first[0]}'s profile; per point "
                                 f"{np.min(r):.3f}-{np.max(r):.3f}"})  # fmt: skip
    for design, ld, k, s in replay_records(c, steps, loads, "sentinel.json"):
        rows.append({"design": design, "what": "sentinel", "load": ld.name, "repeat": k,
                     "value": float(s["factor"]), "n": int(s["n_gaps"]),
                     "note": f"{s['streams']} streams: {s['gap_s'] * 1e3:.2f} ms vs "
                             f"{s['probe_gap_s'] * 1e3:.2f} ms at the probes"
                             + (f"; before {s['factor_before']:.3f}, after "
                                f"{s['after']['factor']:.3f} ({s['after']['gap_s'] * 1e3:.2f} ms)"
                                if s.get("after") else "")})  # fmt: skip
    return rows


def drift_section(c, rows: list[dict]) -> list[str]:
    if not rows:
        return []
    sent = [r["value"] for r in rows if r["what"] == "sentinel"]
    L = ["## The engine's speed over the run (measured, drift.csv)", "",
         "`profile_ratio`: a design's profile (measured right before its block) over the first "
         "design's, median over their common points (> 1: slower). `sentinel`: before each real "
         f"run, {c.probes.sentinel_streams} streams of the delta probe again; the factor is their "
         "median inter-token gap over the probes' (> 1: the served engine is slower than when "
         "the serving terms were measured)"
         + ("; with `probes.sentinel_after` the same again right after the run, and the rung's "
            "factor is the mean of the two (the speed across the rung)." if
            c.probes.sentinel_after else ".")
         + ((" Each rung is simulated with its excess iteration time, the probe's gap times "
             "(factor - 1), added to the served per-iteration overhead delta0 (floored at 0; "
             "`simulate.speed_sentinel_as=overhead`)"
             if c.simulate.speed_sentinel_as == "overhead" else
             " Each rung is simulated with the engine times (the profile's latencies and the "
             "per-iteration serving terms) times its factor (`simulate.speed_sentinel_as=scale`)")
            + "; the simulated capacity and R* are then the real side's estimators on the "
            "simulated rungs." if c.simulate.speed_sentinel else
            " The simulation does not use them (`simulate.speed_sentinel=false`)."),
         ""]  # fmt: skip
    if sent:
        L += [f"Sentinel factors: {min(sent):.3f}-{max(sent):.3f} over {len(sent)} runs "
              f"(median {float(np.median(sent)):.3f}).", ""]  # fmt: skip
    L += ["| design | what | load | factor | n | note |", "|" + "---|" * 6]
    for r in rows:
        v = r["value"]
        L.append(f"| {r['design']} | {r['what']} | {r['load']} | "
                 f"{v:.3f} | {r['n']} | {r['note']} |" if math.isfinite(v) else "")  # fmt: skip
    return [*L, ""]


__all__ = ["DRIFT_COLUMNS", "drift_rows", "drift_section"]
