"""What a load run sends: the trace after every transform, scaled to the server, fitted into its
context window (:func:`load_plan`), and the client's options (:func:`client_options`)."""

from __future__ import annotations

import pandas as pd

from experiments.config.loadgen import LoadgenConfig
from experiments.loadgen.client import ClientOptions


def _scale_lengths(df: pd.DataFrame, conf: LoadgenConfig) -> tuple[pd.DataFrame, dict]:
    """``lengths``: tokens = max(1, round(tokens * scale)), then capped
    (:func:`traces.transforms.scale_capped`); (the table, the record)."""
    from traces.transforms import scale_capped

    L = conf.lengths
    df, changed = scale_capped(df, L.prompt_scale, L.output_scale, L.max_prompt_tokens,
                               L.max_output_tokens)  # fmt: skip
    return df, {
        "prompt_scale": float(L.prompt_scale),
        "output_scale": float(L.output_scale),
        "max_prompt_tokens": L.max_prompt_tokens,
        "max_output_tokens": L.max_output_tokens,
        "changed": int((changed["prompt_tokens"] | changed["output_tokens"]).sum()),
        "rule": "tokens = max(1, round(tokens * scale)), then capped",
    }


def _fit_context(df: pd.DataFrame, conf: LoadgenConfig, info: dict) -> pd.DataFrame:
    """Clip or reject what exceeds the smaller of ``trace.max_context`` and the server's
    ``target.max_model_len``; the error names the key that set the window."""
    from traces.transforms import limit_context

    tr = conf.trace
    max_ctx = min(int(tr.max_context or conf.target.max_model_len), conf.target.max_model_len)
    policy = tr.context_policy
    before = df.set_index("request_id")[["prompt_tokens", "output_tokens"]].sum(axis=1)
    from_trace = tr.max_context is not None and max_ctx == int(tr.max_context)
    keys = ("trace.max_context" if from_trace else "target.max_model_len", "trace.context_policy")
    window = "the " if from_trace else "the server's "
    df, n = limit_context(df, max_ctx, policy, keys=keys, window=window)
    info["context_rejected" if policy == "reject" else "context_clipped"] = n
    after = df.set_index("request_id")[["prompt_tokens", "output_tokens"]].sum(axis=1)
    removed = int(before.sum() - after.sum())
    info["context"] = {
        "policy": policy,
        "max_context": max_ctx,
        "clipped": n if policy == "clip" else 0,
        "clipped_tokens": removed if policy == "clip" else 0,
        "rejected": n if policy == "reject" else 0,
        "rejected_tokens": removed if policy == "reject" else 0,
    }
    info["transforms"].append(
        {"name": "limit_context", "max_tokens": max_ctx, "policy": policy, "affected": n}
    )
    return df


def load_plan(conf: LoadgenConfig) -> tuple[pd.DataFrame, dict]:
    """(trace table after every transform, info dict) of the config (seeded, deterministic)."""
    from traces.transforms import prepare

    tr = conf.trace
    df, info = prepare(
        tr.source,
        fmt=tr.fmt,
        start_s=tr.start_s,
        end_s=tr.end_s,
        scale_to_rate=tr.scale_to_rate,
        resample_rate=tr.resample_rate,
        resample_duration_s=tr.resample_duration_s,
        resample_requests=tr.resample_requests,
        arrival=tr.arrival,
        cv=tr.cv,
        prompt_scale=tr.prompt_scale,
        output_scale=tr.output_scale,
        max_context=None,
        context_policy=tr.context_policy,
        seed=int(tr.seed),
    )
    df, info["length_scaling"] = _scale_lengths(df, conf)
    df = _fit_context(df, conf, info)
    info["requests"] = int(len(df))
    return df.reset_index(drop=True), info


def client_options(conf: LoadgenConfig) -> ClientOptions:
    t, c = conf.target, conf.client
    return ClientOptions(
        base_url=str(t.base_url),
        model=None if t.model is None else str(t.model),
        prompt_mode=str(t.prompt_mode),
        vocab_size=int(t.vocab_size),
        min_token_id=int(t.min_token_id),
        ignore_eos=bool(t.ignore_eos),
        send_min_tokens=bool(t.min_tokens),
        return_token_ids=bool(t.return_token_ids) and t.prompt_mode == "ids",
        max_outstanding=int(c.max_outstanding),
        request_timeout_s=float(c.request_timeout_s),
        connect_timeout_s=float(c.connect_timeout_s),
        lag_warn_s=float(c.lag_warn_s),
        speedup=float(c.speedup),
        max_requests=None if c.max_requests is None else int(c.max_requests),
        max_duration_s=None if c.max_duration_s is None else float(c.max_duration_s),
        seed=int(conf.seed),
    )
