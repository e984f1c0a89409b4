"""The trace of one load level, written once and read by both the simulator and the load
generator (``trace=path trace.path=<step dir>/trace.csv``), so that both see the same requests.

Scaling to the tiny model (stated in ``trace.json``): the source trace (Azure 2023 conversation
or code) is re-sampled at ``rate`` req/s for ``duration_s`` (Poisson, seeded: the paper's
method, (prompt, output) pairs drawn from the trace), then every token count is scaled,
``tokens = max(1, round(tokens * scale))``, capped, and fitted into the model's context window
(clip: output first).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Load:
    name: str
    trace: str = "azure-conv-2023"
    rate: float = 0.5
    duration_s: float = 60.0
    prompt_scale: float = 0.25
    output_scale: float = 0.25
    max_prompt_tokens: int | None = 2048
    max_output_tokens: int | None = 256
    max_context: int = 4096
    arrival: str = "poisson"
    cv: float = 1.0
    seed: int = 0


def build_trace(load: Load, out_dir: str | Path) -> dict:
    """Write ``trace.csv`` (contract 1) and ``trace.json`` (the scaling and counts)."""
    from common.atomic import write_json_atomic, write_text_atomic
    from traces.transforms import limit_context, prepare, scale_capped

    df, info = prepare(
        load.trace,
        resample_rate=load.rate,
        resample_duration_s=load.duration_s,
        arrival=load.arrival,
        cv=load.cv,
        seed=load.seed,
    )
    df, changed = scale_capped(df, load.prompt_scale, load.output_scale, load.max_prompt_tokens,
                               load.max_output_tokens)  # fmt: skip
    scaled = {col: int(m.sum()) for col, m in changed.items()}
    df, clipped = limit_context(df, int(load.max_context), "clip")
    df = df[["request_id", "arrival_s", "prompt_tokens", "output_tokens"]]
    out = Path(out_dir)
    write_text_atomic(out / "trace.csv", df.to_csv(index=False, float_format="%.6f"))
    meta = {
        "load": asdict(load),
        "requests": int(len(df)),
        "mean_rate_rps": float(len(df) / load.duration_s),
        "prompt_tokens_mean": float(df["prompt_tokens"].mean()),
        "output_tokens_mean": float(df["output_tokens"].mean()),
        "scaling_rule": "tokens = max(1, round(tokens * scale)), capped, then clipped to "
        "max_context (output first)",
        "changed_by_scaling": scaled,
        "context_clipped": int(clipped),
        "trace_info": info,
    }
    write_json_atomic(out / "trace.json", meta)
    return {"trace": str(out / "trace.csv"), "requests": int(len(df))}
