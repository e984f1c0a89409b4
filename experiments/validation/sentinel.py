"""The speed sentinel: how fast the served engine runs right before each real run, against the
serving probes' measurement of the same thing.

The machine's own speed drifts (the same engine, profiled on the same core minutes apart, differs
by 5-10%, an hour apart by 20%: results/reference/validation/NOTES.md), and the phase profile and
the probes are measured once per design, minutes before its last rung. So before each real run
(``replay-<design>-<load>-r<k>``), on the running deployment, the sentinel repeats one point of
the delta probe (:func:`experiments.validation.probes.measure_delta`): its run of the most
streams up to ``probes.sentinel_streams`` (8), that many concurrent streams of
``probes.delta_prompt_tokens`` + ``probes.delta_output_tokens`` tokens, on its own prompt ids.
Its **factor** is the median inter-token gap now over the median gap of the probe's run of the
same stream count (``probe-<design>``'s probes.csv): 1.0 means the served
engine runs as fast as when the serving component was measured; 1.1, 10% slower. With
``probes.sentinel_after`` (the default) the sentinel runs again right after the real run (its
own prompt ids) and the rung's factor is the mean of the two readings
(:func:`experiments.validation.live.bracketed`): a 1.6-s reading before a 30-40-s rung read the
machine's speed at one instant (the validation of 7 Dec 2026 21:20: factors 0.84-1.12 within
one design's block of 8 minutes).

With ``simulate.speed_sentinel`` the rung's simulation runs after the sentinel (still before
the rung's real run is compared) with the sentinel applied as ``simulate.speed_sentinel_as``
says (:func:`applied`): by default its excess gap added to every iteration (delta0), else
(``scale``) every engine time scaled by the factor: the profile's latencies (a scaled copy of the
profile, :func:`scaled_profile`) and the engine-time serving terms (:data:`ENGINE_TERMS`); the
client-path terms (alpha, the legs) are never scaled. Either way every sentinel is recorded (the
replay step's ``sentinel.json``) and shown in the report's drift table.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.validation.errors import StepError
from experiments.validation.sse import run_client

# the serving terms that are engine time (scaled with the engine's speed); the others are the
# client path's (HTTP, proxy legs)
ENGINE_TERMS = ("iteration_s", "iteration_s_per_request", "kv_load_s", "kv_load_s_per_token",
                "kv_save_s", "kv_save_s_per_token", "decode_work_s", "decode_work_s_per_token")


def sentinel_seed(seed: int, design: str, load: str, repeat: int) -> int:
    """The sentinel's prompt-id seed: its own per design, load and repeat (never a replay's, the
    probes' or the calibration's)."""
    h = hashlib.sha256(f"{seed}/{design}/{load}/{repeat}/sentinel".encode()).digest()
    return int.from_bytes(h[:4], "big") & 0x7FFFFFFF


def probe_gap(probes_csv: Path, streams: int) -> tuple[int, float, int]:
    """(N, median gap s, number of gaps) of the delta probe's run of the most streams N it ran
    up to ``streams`` (runs above the engines' max_num_seqs are left out by the probes)."""
    df = pd.read_csv(probes_csv)
    d = df[(df["probe"] == "delta") & (df["streams"] <= streams)]
    if d.empty:
        raise StepError("sentinel", f"{probes_csv}: no delta probe of at most {streams} "
                        "streams (probes.sentinel_streams)")  # fmt: skip
    n = int(d["streams"].max())
    g = d[d["streams"] == n]["seconds"]
    return n, float(np.median(g)), int(len(g))


def measure(url: str, *, model: str, streams: int, prompt_tokens: int, output_tokens: int,
            seed: int, vocab: int, timeout_s: float, design: str) -> dict:  # fmt: skip
    """One sentinel against ``url`` (the deployment's base URL): {'gap_s', 'n_gaps', 't_s'}."""
    from experiments.validation.probes import measure_delta

    async def go():
        import aiohttp

        async with aiohttp.ClientSession() as s:
            return await measure_delta(s, f"{url}/v1/completions", model, [streams],
                                       prompt_tokens, output_tokens, seed, vocab, timeout_s,
                                       design)  # fmt: skip

    t0 = time.time()
    rows = run_client("sentinel", go(), timeout_s)
    gaps = [r["seconds"] for r in rows]
    return {"gap_s": float(np.median(gaps)), "n_gaps": len(gaps), "t_s": t0}


def factor(records: list[dict]) -> float:
    """The speed factor of a rung: the median of its repeats' sentinel factors (1.0 without)."""
    fs = [float(r["factor"]) for r in records if r and r.get("factor")]
    return float(np.median(fs)) if fs else 1.0


def applied(ov: list[str], records: list[dict], mode: str) -> tuple[list[str], float, dict]:
    """(the rung's overrides, the factor its engine times are scaled by, what was applied) for
    the sentinel ``records`` of its real runs (:func:`factor`), taken as ``mode``:

    - ``overhead`` (the default): the sentinel's excess, ``probe_gap_s * (factor - 1)`` seconds
      per iteration at its stream count, is added to the served per-iteration overhead
      (``serving.iteration_s``, delta0; floored at 0) and no engine time is scaled. The drift is
      taken as time added to every iteration, not as a slower engine: on the reference run of
      7 Dec 2026 the baseline's sentinels read 1.11-1.22 while its prefill-dominated coding rungs
      ran as profiled (scaled, their simulated TTFT P50 was 2.1-3.3x the real one; as
      overhead, +9% and +17%; on the 8 Dec reference, not used for the choice, 9 of 12 baseline
      P50 values met as overhead, 6 scaled: results/reference/validation-control-whatif/);
    - ``scale``: every engine time times the factor (the profile and :data:`ENGINE_TERMS`:
      :func:`scaled_profile`, :func:`scaled_terms`; the model before 8 Dec 2026).

    Without sentinel records (or a factor of 1) the overrides are returned as they are."""
    f = factor(records)
    info = {"sentinel_as": mode, "sentinel_factor": f}
    if mode == "scale" or f == 1.0:
        return list(ov), f, info
    gaps = [float(r["probe_gap_s"]) for r in records if r and r.get("probe_gap_s")]
    excess = float(np.median(gaps)) * (f - 1.0)
    d0 = 0.0
    rest = []
    for o in ov:
        k, _, v = o.partition("=")
        if k == "serving.iteration_s":
            d0 = float(v)
        else:
            rest.append(o)
    info["sentinel_excess_s"] = excess
    return [*rest, f"serving.iteration_s={max(0.0, d0 + excess):.6g}"], 1.0, info


def scaled_profile(source: str, factor: float, out: Path) -> Path:
    """A copy of the profile ``source`` (a profiles.csv or a folder of them) with every
    ``latency_s`` (and ``latency_std_s``) times ``factor``, its ``source`` column saying so;
    written to ``out/profiles.csv``."""
    from common.atomic import write_text_atomic

    p = Path(source)
    files = sorted(p.rglob("profiles.csv")) if p.is_dir() else [p]
    df = pd.concat([pd.read_csv(f) for f in files], ignore_index=True)
    for col in ("latency_s", "latency_std_s"):
        if col in df:
            df[col] = df[col] * factor
    if "energy_j" in df:
        df["energy_j"] = df["energy_j"] * factor
    df["source"] = df["source"].astype(str) + f"; latency x {factor:.4f} (speed sentinel)"
    out = Path(out) / "profiles.csv"
    write_text_atomic(out, df.to_csv(index=False, float_format="%.9g"))
    return out


def scaled_terms(ov: list[str], factor: float) -> list[str]:
    """The overrides ``ov`` with each engine-time serving term (:data:`ENGINE_TERMS`) times
    ``factor``."""
    out = []
    for o in ov:
        k, _, v = o.partition("=")
        if k.startswith("serving.") and k.split(".", 1)[1] in ENGINE_TERMS:
            o = f"{k}={float(v) * factor:.6g}"
        out.append(o)
    return out


__all__ = ["ENGINE_TERMS", "sentinel_seed", "probe_gap", "measure", "factor", "scaled_profile",
           "scaled_terms"]  # fmt: skip
