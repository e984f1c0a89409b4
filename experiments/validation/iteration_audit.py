"""The iteration audit: the real engine's iterations against the simulator's iteration model, at
the batch the real engine ran.

The judged tables compare latency percentiles, which mix two errors: the iteration model (how
long one engine step of a given batch takes) and the dynamics (queueing, batching, admission)
that the simulator builds from it. Near saturation a small iteration error becomes a large
queueing error. This audit separates the first from the second, on the published real runs
alone (nothing simulated, nothing fitted):

- every client inter-token gap of a real run (token k-1 to token k of one request, the client's
  ``tokens.parquet``) is one engine iteration of the token machine, as the client sees it;
- its **batch** is the number of requests streaming on that machine across the gap (first token
  at or before its start, last token at or after its end), its **context** their KV tokens then
  (prompt + tokens received by the gap's start);
- its **model** is the simulator's price of a decode iteration of that batch and context: the
  rung's phase model (the published profile) plus the served per-iteration overhead
  (``serving.iteration_s + serving.iteration_s_per_request * B``), times the rung's speed factor
  (as the rung was simulated: ``sim.json``);
- each gap is labelled by what else happened on the machine: ``admission`` (a request's first
  token in the gap's second half or up to :data:`EDGE_S` after its end: the same iteration
  emitted it, after admitting the request with its prefill or hand-over load), ``prefill``
  (co-located only: a request between its send and first token overlaps the gap: its prompt is
  computed in these iterations), ``finish`` (a request's last token up to :data:`EDGE_S` before
  the gap's start or in its first half: the iteration after it), else ``quiet``.

A quiet gap's excess (real - model) is the iteration model's own error at that batch; an
admission gap's excess is what admitting a request costs the running decodes, shown beside the
simulator's hand-over work for it (splitwise: the KV load ``kv_load_s + kv_load_s_per_token *
injected``, injected = L less the recomputed tail, plus the decode leg's work ``decode_work_s +
decode_work_s_per_token * L`` where it is modelled as work; the tail's recompute is not in that
column).

``baseline2`` (two co-located instances behind a router) is audited per instance where the
client recorded the router's choice (the ``X-Backend`` header, in ``token_machine``; load
generators since 8 Dec 2026 write it, with the ``prefill_leg_s`` column): each instance's gaps
are rebuilt from its own requests. Older records leave the instance unknown (so a gap's batch),
and their baseline2 rungs are skipped.

Client gaps carry the streaming path's jitter (a chunk delayed on the way arrives late and the
next one early), so the audit reports medians and the interquartile range of the excess, never
means. Gaps are not independent samples (neighbouring gaps share iterations), so no confidence
interval is claimed.

``python -m experiments.validation.iteration_audit <published folder>`` prints the table; the
report writes ``iteration_audit.csv`` and its section from the same function.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.errors import ExperimentError

#: a first (last) token this close (s) after the end (before the start) of a gap belongs to the
#: gap's iteration (the streams of one iteration reach the client a few ms apart)
EDGE_S = 0.01
#: batch bins (lower bound inclusive; the last bin is the instances' full batch and above)
BINS = (1, 4, 8, 12, 16, 20, 24, 28, 32)
#: designs audited (baseline2 only where its records name each request's instance)
AUDITED = ("baseline", "splitwise", "baseline2")
COLUMNS = ["design", "load", "event", "batch_lo", "batch_hi", "gaps", "real_ms", "model_ms",
           "excess_ms", "excess_p25_ms", "excess_p75_ms", "kv_load_ms"]  # fmt: skip


def read_run(run: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A real run's (requests, tokens) tables; ExperimentError (one line) naming the file."""
    from experiments.validation.compare import read_parquet

    return read_parquet(run / "requests.parquet"), read_parquet(run / "tokens.parquet")


def machines(run: Path | pd.DataFrame) -> list[int] | None:
    """The token machines of a real run's requests (its folder or its request table); None where
    the records cannot name them (a load generator older than the ``prefill_leg_s`` column wrote
    0 for every request)."""
    req = read_run(run)[0] if isinstance(run, Path) else run
    if "prefill_leg_s" not in req:
        return None
    return sorted(int(m) for m in req["token_machine"].unique())


def _requests(req: pd.DataFrame, tok: pd.DataFrame, machine: int | None = None
              ) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:  # fmt: skip
    """(absolute token times of each request with >= 1 token, their prompt tokens, send times)
    of one real run's tables (``machine``: only the requests its token machine served)."""
    if machine is not None:
        req = req[req["token_machine"] == machine]
    times = dict(zip(tok["request_id"], tok["token_times_s"], strict=True))
    sent = req["sent_s"] if "sent_s" in req else req["arrival_s"]
    tt, prompts, sends = [], [], []
    for rid, s, p in zip(req["request_id"], sent, req["prompt_tokens"], strict=True):
        t = np.asarray(times.get(rid, []), dtype=float)
        if t.size and np.isfinite(s):
            tt.append(float(s) + t)
            prompts.append(int(p))
            sends.append(float(s))
    return tt, np.asarray(prompts, dtype=np.int64), np.asarray(sends, dtype=float)


def gap_table(run: Path | tuple[pd.DataFrame, pd.DataFrame], *, colocated: bool,
              machine: int | None = None) -> pd.DataFrame:  # fmt: skip
    """One row per client inter-token gap of the real run ``run`` (its folder, or its tables as
    :func:`read_run` gives them; ``machine``: of that token machine's requests alone): ``t0, t1,
    real_s, batch, context, prompt_of_admitted, event`` (module doc)."""
    req, tok = read_run(run) if isinstance(run, Path) else run
    tt, prompts, sends = _requests(req, tok, machine)
    if not tt:
        return pd.DataFrame(columns=["t0", "t1", "real_s", "batch", "context", "event",
                                     "admitted_prompt"])  # fmt: skip
    first = np.array([t[0] for t in tt])
    last = np.array([t[-1] for t in tt])
    t0 = np.concatenate([t[:-1] for t in tt])
    t1 = np.concatenate([t[1:] for t in tt])
    # batch and context of each gap (gaps x requests, a few million booleans a run)
    active = (first[None, :] <= t0[:, None]) & (last[None, :] >= t1[:, None])
    out_by_t0 = np.stack([np.searchsorted(t, t0, side="right") for t in tt], axis=1)
    context = (active * (prompts[None, :] + out_by_t0)).sum(axis=1)
    mid = (0.5 * (t0 + t1))[:, None]
    admit = (first[None, :] > mid) & (first[None, :] <= t1[:, None] + EDGE_S)
    finish = (last[None, :] >= t0[:, None] - EDGE_S) & (last[None, :] < mid)
    event = np.where(admit.any(axis=1), "admission",
                     np.where(finish.any(axis=1), "finish", "quiet")).astype(object)  # fmt: skip
    if colocated:
        prefilling = (sends[None, :] <= t1[:, None]) & (first[None, :] > t0[:, None])
        event[prefilling.any(axis=1) & (event != "admission")] = "prefill"
    # the prompt of the (first) request admitted in an admission gap, for its KV-load term
    idx = np.where(admit.any(axis=1), admit.argmax(axis=1), -1)
    adm_prompt = np.where(idx >= 0, prompts[np.maximum(idx, 0)], 0)
    return pd.DataFrame({"t0": t0, "t1": t1, "real_s": t1 - t0, "batch": active.sum(axis=1),
                         "context": context, "event": event,
                         "admitted_prompt": adm_prompt})  # fmt: skip


def override_values(overrides: list[str]) -> dict[str, str]:
    return {k: v for k, _, v in (o.partition("=") for o in overrides)}


def _bin(batch: np.ndarray) -> np.ndarray:
    return np.searchsorted(np.asarray(BINS), batch, side="right") - 1


@dataclass(frozen=True)
class Rung:
    """One simulated rung as the audit needs it: its overrides and speed factor (as simulated),
    its profile on disk and its real runs' folders."""

    design: str
    load: str
    overrides: tuple[str, ...]
    speed_factor: float
    profile: Path
    runs: tuple[Path, ...]

    def values(self) -> dict[str, str]:
        """The rung's simulator overrides as key -> value."""
        return override_values(list(self.overrides))

    def serving(self):
        """The serving component the rung was simulated with (its ``serving.*`` overrides)."""
        from replay.serving import ServingConfig

        return ServingConfig(**{k.split(".", 1)[1]: float(v) for k, v in self.values().items()
                                if k.startswith("serving.")})  # fmt: skip

    def phase_times(self):
        """The rung's phase model (its published profile, model and GPU) as
        :class:`experiments.validation.serving_fit.PhaseTimes`."""
        from experiments.validation.serving_fit import PhaseTimes

        ov = self.values()
        return PhaseTimes.from_source(str(self.profile), ov["model"], ov["gpu"])


def published_rungs(pub: Path) -> list[Rung]:
    """The audited rungs of a published validation folder (``sims/<design>/<load>/sim.json``,
    ``runs/``, ``profile/``: :mod:`experiments.validation.recompute`'s layout)."""
    pub = Path(pub)
    if not (pub / "sims").is_dir():
        raise ExperimentError(f"{pub}: no sims/ folder (not a published validation report)")
    out = []
    for design in AUDITED:
        for f in sorted((pub / "sims" / design).glob("*/sim.json")):
            try:
                sim = json.loads(f.read_text())
            except (OSError, ValueError) as e:
                raise ExperimentError(f"{f}: {type(e).__name__}: {e}") from None
            if not sim.get("profile"):
                raise ExperimentError(f"{f}: no published profile for this simulation")
            out.append(Rung(design, str(sim["load"]["name"]), tuple(sim["overrides"]),
                            float(sim.get("speed_factor", 1.0)), pub / sim["profile"],
                            tuple(pub / r for r in sim["real_runs"])))  # fmt: skip
    return out


def step_rungs(c, steps, by_design: dict) -> list[Rung]:
    """The audited rungs of a validation run dir (its ``simulate-*`` and ``replay-*`` steps)."""
    from experiments.validation.recompute import simulate_steps

    out = []
    for design in (d for d in c.designs if d in AUDITED):
        for ld, step in simulate_steps(steps, design, by_design.get(design, [])):
            runs = tuple(steps.path(i) / "run" for i in step["inputs"] if i.startswith("replay-"))
            if not runs:
                continue
            src = step["config"]["source"]
            out.append(Rung(design, ld.name, tuple(step["config"]["overrides"]),
                            float(step["result"].get("speed_factor", 1.0)), Path(src),
                            runs))  # fmt: skip
    return out


def rung_rows(rung: Rung, gaps: pd.DataFrame) -> list[dict]:
    """The audit rows of one rung: per event and batch bin, its gaps' medians (module doc)."""
    times = rung.phase_times()
    sv = rung.serving()
    f = rung.speed_factor
    it0, it1 = sv.iteration_s, sv.iteration_s_per_request
    kv0, kv1 = sv.kv_load_s, sv.kv_load_s_per_token
    block = int(rung.values().get("scheduler.vllm.block_size", 16))
    g = gaps[gaps["batch"] >= 1]
    if g.empty:
        return []
    b = g["batch"].to_numpy(dtype=float)
    model = f * (times.decodes(b, g["context"].to_numpy()) + it0 + it1 * b)
    L = g["admitted_prompt"].to_numpy(dtype=np.int64)
    tail = L - block * ((np.maximum(L, 1) - 1) // block)
    # the hand-over's work in the simulator: the KV load (whole blocks) and the decode leg's
    # work (serving.decode_work_*, per hand-over: 0 where the leg is modelled as latency)
    kv = np.where(L > 0, f * (kv0 + kv1 * (L - tail)
                              + sv.decode_work_s + sv.decode_work_s_per_token * L), np.nan)
    df = pd.DataFrame({"event": g["event"].to_numpy(), "bin": _bin(g["batch"].to_numpy()),
                       "real": g["real_s"].to_numpy(), "model": model,
                       "excess": g["real_s"].to_numpy() - model, "kv": kv})  # fmt: skip
    rows = []
    for (event, k), part in df.groupby(["event", "bin"], sort=True):
        ex = part["excess"].to_numpy()
        split_admission = rung.design == "splitwise" and event == "admission"
        rows.append({
            "design": rung.design, "load": rung.load, "event": event, "batch_lo": BINS[k],
            "batch_hi": BINS[k + 1] - 1 if k + 1 < len(BINS) else None, "gaps": len(part),
            "real_ms": 1e3 * float(np.median(part["real"])),
            "model_ms": 1e3 * float(np.median(part["model"])),
            "excess_ms": 1e3 * float(np.median(ex)),
            "excess_p25_ms": 1e3 * float(np.percentile(ex, 25)),
            "excess_p75_ms": 1e3 * float(np.percentile(ex, 75)),
            "kv_load_ms": 1e3 * float(np.nanmedian(part["kv"])) if split_admission else None,
        })  # fmt: skip
    return rows


def audit(rungs: list[Rung]) -> pd.DataFrame:
    """The audit table (:data:`COLUMNS`, one row per rung, event and batch bin, sorted by them)
    of ``rungs``."""
    rows = []
    for r in rungs:
        gaps = []
        for run in r.runs:
            tables = read_run(run)
            if r.design != "baseline2":
                gaps.append(gap_table(tables, colocated=r.design != "splitwise"))
                continue
            for m in machines(tables[0]) or []:  # each instance alone; none where not recorded
                gaps.append(gap_table(tables, colocated=True, machine=m))
        if gaps:
            rows += rung_rows(r, pd.concat(gaps, ignore_index=True))
    df = pd.DataFrame(rows, columns=COLUMNS).astype({"batch_hi": "Int64"})
    # one order whatever the rungs' (a run dir lists them in ladder order, a published folder
    # by name)
    return df.sort_values(["design", "load", "event", "batch_lo"], kind="stable",
                          ignore_index=True)  # fmt: skip


def pooled(df: pd.DataFrame, event: str = "quiet") -> pd.DataFrame:
    """Per design and batch bin over every rung: gaps, and the gap-weighted mean of the rungs'
    median real, model and excess and of their KV-load terms (ms; NaN where no rung has one)
    for gaps of ``event``."""
    d = df[df["event"] == event]
    if d.empty:
        return pd.DataFrame(columns=["design", "batch_lo", "batch_hi", "gaps", "rungs",
                                     "real_ms", "model_ms", "excess_ms", "kv_load_ms"])  # fmt: skip
    out = []
    for (design, lo), part in d.groupby(["design", "batch_lo"], sort=True):
        w = part["gaps"].to_numpy(dtype=float)
        kv = part.dropna(subset=["kv_load_ms"])
        out.append({"design": design, "batch_lo": lo, "batch_hi": part["batch_hi"].iloc[0],
                    "gaps": int(w.sum()), "rungs": len(part),
                    **{c: float(np.average(part[c], weights=w))
                       for c in ("real_ms", "model_ms", "excess_ms")},
                    "kv_load_ms": (float(np.average(kv["kv_load_ms"], weights=kv["gaps"]))
                                   if len(kv) else math.nan)})  # fmt: skip
    return pd.DataFrame(out)


def main(argv: list[str] | None = None) -> int:
    """Print the audit of a published folder (exit 2 on a missing or unreadable file)."""
    from experiments.validation.tools import folder_command

    def work(folder: Path) -> int:
        df = audit(published_rungs(folder))
        with pd.option_context("display.width", 200, "display.max_rows", 500):
            print(pooled(df).round(1).to_string(index=False))
        return 0

    return folder_command("experiments.validation.iteration_audit", argv, work)


if __name__ == "__main__":
    sys.exit(main())
