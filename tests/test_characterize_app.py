"""splitbench-characterize end to end on CPU: Hydra config -> profile CSV -> phase-model fit."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("torch")

from characterize.modeling.profiles import PROFILE_COLUMNS  # noqa: E402
from experiments.apps import characterize as app  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    torch.set_num_threads(1)


def _compose(overrides):
    from hydra import compose, initialize_config_dir

    app.register()
    with initialize_config_dir(config_dir=app.CONF_DIR, version_base="1.3"):
        return compose("characterize", overrides=overrides)


def _tiny(tmp_path, *extra):
    return [
        "model=tiny-llama",
        "device=cpu",
        "sweep=tiny",
        "power=off",
        f"out_dir={tmp_path}",
        "progress=false",
        *extra,
    ]


def test_paper_config_composes_with_the_paper_sweep():
    cfg = _compose(["model=llama2-70b", "shard.tp=8", "sweep=paper"])
    pc = app.profile_config(cfg)
    assert pc.model == "llama2-70b" and pc.tp == 8 and pc.impl == "native"
    assert pc.device == "cuda" and pc.power == "auto" and pc.power_cap_w is None
    assert len(pc.sweep.prefill) == 13  # prompts 128..8192 at batch 1, batch 1..64 at 512
    assert (1, 8192) in pc.sweep.prefill and (64, 512) in pc.sweep.prefill
    assert len(pc.sweep.decode) == 28 and (64, 4096) in pc.sweep.decode
    assert pc.timing.min_window_s == 0.5
    bloom = app.profile_config(_compose(["model=bloom-176b", "sweep=reduced", "layers=7"]))
    assert bloom.shard().layer_scale == pytest.approx(10.0) and bloom.tp == 8


def test_app_end_to_end_profile_then_fit(tmp_path, capsys):
    cfg = _compose(_tiny(tmp_path))
    run = app.run(cfg)
    out = capsys.readouterr().out
    csv = tmp_path / "tiny-llama-tp1-native-cpu-tiny" / "profiles.csv"
    assert run.csv_path == csv
    df = pd.read_csv(csv)
    assert list(df.columns) == PROFILE_COLUMNS
    assert len(df) == 8 + 12 and (df.latency_s > 0).all()
    assert (tmp_path / "tiny-llama-tp1-native-cpu-tiny" / "profiles.meta.json").is_file()
    # the app fitted the phase model and printed its held-out errors per phase
    assert "fit prefill: held-out MAPE" in out and "fit decode: held-out MAPE" in out
    from characterize.modeling.phase_model import fit_phase_model, kv_read_floor_s

    pm = fit_phase_model(df, "tiny-llama", "cpu", 1)
    report = {r["phase"]: r for r in pm.fit_report()}
    assert set(report) == {"prefill", "decode"}
    pre, dec = df[df.phase == "prefill"], df[df.phase == "decode"]
    pred = {
        "prefill": [
            pm.prefill_time([t] * b)
            for b, t in zip(pre.batch_size, pre.tokens_per_request, strict=True)
        ],
        "decode": [
            pm.decode_time(b, b * t)
            for b, t in zip(dec.batch_size, dec.tokens_per_request, strict=True)
        ],
    }
    for phase, rows in (("prefill", pre), ("decode", dec)):
        rel = np.asarray(pred[phase]) / rows.latency_s.to_numpy() - 1.0
        # the fit predicts its measured points (within 3x on a noisy CPU) ...
        assert (np.abs(rel) < 2.0).all(), (phase, rel)
        # ... and its reported in-sample error is exactly the error of these predictions
        if report[phase]["outliers"] == 0:
            assert report[phase]["fit_mape"] == pytest.approx(np.abs(rel).mean(), rel=1e-9)
        assert report[phase]["points"] + report[phase]["outliers"] == len(rows)
    # decode grows with the context held: at least the KV read at the CPU spec's bandwidth
    d2 = pm.decode_coefficients()[2]
    assert d2 >= kv_read_floor_s("tiny-llama", "cpu", 1) == pytest.approx(256 / 0.02e12)
    assert report["prefill"]["power_source"].startswith("fallback")  # power=off: no power


def test_fit_is_skipped_without_specs(tmp_path, capsys):
    app.run(
        _compose(
            _tiny(
                tmp_path,
                "gpu_label=my-gpu",
                "sweep.prefill=[{batch: [1], prompt: [8]}]",
                "sweep.decode=[{batch: [1], context: [8]}]",
            )
        )
    )
    assert "fit skipped: no spec for gpu 'my-gpu' or model 'tiny-llama'" in capsys.readouterr().out


def test_cuda_device_without_cuda_is_one_line_naming_the_cpu_run(tmp_path, monkeypatch, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible")
    argv = [a for a in _tiny(tmp_path) if a != "device=cpu"]  # the README's command: device=cuda
    code = _main(monkeypatch, argv)
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("error: device: cuda: ")
    assert "model=tiny-llama device=cpu sweep=tiny power=off" in err
    assert not list(tmp_path.glob("*/profiles.csv"))  # nothing measured


@pytest.mark.parametrize("launcher", ["joblib", "ray", "submitit_local"])
def test_parallel_launcher_multirun_is_refused(tmp_path, monkeypatch, capsys, launcher):
    code = _main(monkeypatch, ["-m", *_tiny(tmp_path), f"hydra/launcher={launcher}"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"error: hydra/launcher: '{launcher}' runs several points at once on one GPU" in err


def _main(monkeypatch, argv):
    monkeypatch.setattr(sys, "argv", ["splitbench-characterize", *argv])
    monkeypatch.chdir(argv_dir(argv))  # Hydra writes its logs under ./outputs
    with pytest.raises(SystemExit) as e:
        app.main()
    return e.value.code


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["impl=vllm"], "error: impl: must be one of native, transformers, got 'vllm'"),
        (["shard.tp=3"], "num_attention_heads=4 is not divisible by tp=3"),
        (["power_cap_w=300"], "power_cap_w: a power cap needs NVML"),
        (["device=tpu"], "error: device: must be cpu, cuda or cuda:N, got 'tpu'"),
        (["model=nope"], "error: model: unknown option 'nope' (known: bloom-176b, llama2-70b,"),
        (["layers=abc"], "error: layers: Value 'abc' of type 'str' could not be converted"),
    ],
)
def test_bad_options_are_one_line_exit_2(tmp_path, monkeypatch, capsys, extra, message):
    code = _main(monkeypatch, [*_tiny(tmp_path), *extra])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_power_cap_needs_allow(tmp_path, monkeypatch, capsys):
    code = _main(
        monkeypatch,
        [*_tiny(tmp_path), "power=auto", "power_cap_w=300"],
    )
    err = capsys.readouterr().err
    assert code == 2 and "allow_power_cap=true" in err


def argv_dir(argv) -> str:
    return next(a.split("=", 1)[1] for a in argv if a.startswith("out_dir="))


def test_main_runs_and_resumes(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # Hydra writes its logs under ./outputs
    monkeypatch.setattr(
        sys,
        "argv",
        ["splitbench-characterize", *_tiny(tmp_path, "model=tiny-bloom", "impl=transformers")],
    )
    app.main()
    first = capsys.readouterr()
    csv = tmp_path / "tiny-bloom-tp1-transformers-cpu-tiny" / "profiles.csv"
    assert csv.is_file() and "profile:" in first.out
    before = csv.read_bytes()
    app.main()
    second = capsys.readouterr()
    assert "resume: 20 point(s) already" in second.err
    assert csv.read_bytes() == before
