"""The package's measured serving points (``systems/silicon_sample.csv``) the overhead is fitted on.

``silicon_sample.csv`` (aiconfigurator-core 0.12.0) holds 5,221 measured (TTFT, TPOT) points of
real deployments. :func:`measured_points` keeps the ones the composed tables can be checked on:
dense Llama-3.1-70B (``meta-llama/Llama-3.1-70B``), aggregated (co-located) serving, fp8
weights (the suite composes bf16 and fp8; the nvfp4 rows on B200 are left out: no 4.5-bit model
spec), on the systems of :data:`~.library.GPU_SYSTEMS` and the engines of
:data:`~.library.ENGINES`: H100 vLLM (TP 2-8), H200 vLLM and TensorRT-LLM, B200 vLLM and
TensorRT-LLM (TP 1-8); prompt/output 1k/1k, 1k/8k, 8k/1k; concurrency 4-128. Their engine
versions are not recorded (measured 2025-10-29).

Columns: engine, gpu (suite spec name), system, tp, prompt_tokens, output_tokens, concurrency,
ttft_s, tpot_s, point (the file's ``id``).
"""

from __future__ import annotations

import pandas as pd

from characterize.modeling.compose import library

MODEL_PATH = "meta-llama/Llama-3.1-70B"
MODEL = "llama3.1-70b"
DTYPE = "fp8"


def measured_points(path=None) -> pd.DataFrame:
    """The filtered measured points (module doc), sorted by engine, gpu, tp, shape, concurrency."""
    path = path or library.silicon_sample_path()
    raw = pd.read_csv(path)
    systems = {s: g for g, s in library.GPU_SYSTEMS.items()}
    keep = (
        (raw["model_path"] == MODEL_PATH)
        & (raw["mode"] == "agg")
        & (raw["gemm_quant_mode"] == DTYPE)
        & raw["system"].isin(list(systems))
        & raw["backend"].isin(list(library.ENGINES))
    )
    d = raw[keep]
    out = pd.DataFrame(
        {
            "engine": d["backend"].astype(str),
            "gpu": d["system"].map(systems),
            "system": d["system"].astype(str),
            "tp": d["tp_size"].astype(int),
            "prompt_tokens": d["isl"].astype(int),
            "output_tokens": d["osl"].astype(int),
            "concurrency": d["batch_size"].astype(int),
            "ttft_s": d["silicon_ttft_ms"].astype(float) / 1e3,
            "tpot_s": d["silicon_tpot_ms"].astype(float) / 1e3,
            "point": d["id"].astype(str),
        }
    )
    keys = ["engine", "gpu", "tp", "prompt_tokens", "output_tokens", "concurrency", "point"]
    return out.sort_values(keys, kind="stable").reset_index(drop=True)
