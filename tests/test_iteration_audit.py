"""The iteration audit (experiments.validation.iteration_audit): batch, context and events from
client token times, the model column against the phase model, and its CLI's errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from experiments.validation import iteration_audit as ia

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "results/reference/validation/profile/splitwise/profiles.csv"


def _run(d: Path, reqs: list[tuple[float, int, list[float]]]) -> Path:
    """A real run folder: (send time, prompt tokens, token times from the send) per request."""
    d.mkdir(parents=True)
    pd.DataFrame({"request_id": range(len(reqs)), "sent_s": [r[0] for r in reqs],
                  "arrival_s": [r[0] for r in reqs],
                  "prompt_tokens": [r[1] for r in reqs]}).to_parquet(d / "requests.parquet")
    pd.DataFrame({"request_id": range(len(reqs)),
                  "token_times_s": [r[2] for r in reqs]}).to_parquet(d / "tokens.parquet")
    return d


def test_batch_context_and_events_come_from_the_token_times(tmp_path):
    # A streams from t=0.1 every 20 ms; B (sent at 0.05) joins with its first token at 0.16
    # (the end of A's gap 0.14-0.16) and ends at 0.20; C (one token) ends at 0.105
    run = _run(tmp_path / "r", [
        (0.0, 100, [0.10, 0.12, 0.14, 0.16, 0.18, 0.20, 0.22, 0.24, 0.26]),
        (0.05, 50, [0.11, 0.13, 0.15]),
        (0.0, 10, [0.105]),
    ])  # fmt: skip
    g = ia.gap_table(run, colocated=False)
    a = g[np.isclose(g["t0"], 0.14) & np.isclose(g["t1"], 0.16)].iloc[0]
    # B's first token (0.16) is in the gap's second half: the gap's iteration admitted it
    assert a["event"] == "admission" and a["batch"] == 1 and a["admitted_prompt"] == 50
    # A alone, 3 tokens out by 0.14: context 100 + 3
    assert a["context"] == 103
    both = g[np.isclose(g["t0"], 0.16) & np.isclose(g["t1"], 0.18)]
    assert set(both["batch"]) == {2}
    # A's prompt + 4 tokens, B's prompt + 1 token
    assert set(both["context"]) == {100 + 4 + 50 + 1}
    after = g[np.isclose(g["t0"], 0.20) & np.isclose(g["t1"], 0.22)].iloc[0]
    assert after["event"] == "finish" and after["batch"] == 1  # B's last token at 0.20
    assert g[np.isclose(g["t0"], 0.24)].iloc[0]["event"] == "quiet"
    # co-located: a request between its send and first token overlaps A's first gaps (prefill)
    gc = ia.gap_table(run, colocated=True)
    assert gc[np.isclose(gc["t0"], 0.10)].iloc[0]["event"] == "prefill"
    assert len(g) == 8 + 2  # every gap of every request with two tokens or more


def test_the_model_column_is_the_simulators_iteration_price(tmp_path):
    from characterize.modeling.phase.model_set import load_phase_models

    run = _run(tmp_path / "r", [(0.0, 300, [0.1 + 0.05 * k for k in range(12)])])
    ov = ("model=tiny-llama-512", "gpu=cpu", "serving.iteration_s=0.004",
          "serving.iteration_s_per_request=0.001")  # fmt: skip
    rung = ia.Rung("splitwise", "x", ov, 1.1, PROFILE, (run,))
    df = ia.audit([rung])
    assert list(df.columns) == ia.COLUMNS
    row = df.iloc[0]
    assert row["event"] == "quiet" and row["gaps"] == 11 and row["batch_lo"] == 1
    d0, d1, d2, d3 = load_phase_models(str(PROFILE), reference=None).get(
        "tiny-llama-512", "cpu", 1).decode_coefficients()
    ctx = np.array([300 + k for k in range(1, 12)], dtype=float)  # tokens out by each gap start
    model = 1.1 * (d0 + d1 + d2 * ctx + d3 + 0.004 + 0.001)
    assert row["model_ms"] == pytest.approx(1e3 * np.median(model))
    assert row["excess_ms"] == pytest.approx(1e3 * np.median(0.05 - model))
    assert row["real_ms"] == pytest.approx(50.0)


def test_the_cli_names_a_folder_that_is_not_a_report(tmp_path, capsys):
    assert ia.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no sims/ folder" in err[0] and str(tmp_path) in err[0]
    assert ia.main([]) == 2


def test_the_cli_names_a_broken_sim_file_and_a_missing_run(tmp_path, capsys):
    bad = tmp_path / "sims" / "splitwise" / "conv" / "sim.json"
    bad.parent.mkdir(parents=True)
    bad.write_text("{")
    assert ia.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0] and "JSONDecodeError" in err[0]
    bad.write_text('{"load": {"name": "conv"}, "overrides": [], "profile": "p.csv", '
                   '"real_runs": ["runs/gone"]}')
    assert ia.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(tmp_path / "runs" / "gone") in err[0]
