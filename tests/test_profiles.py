"""Profile tables: reference import, validation errors, file round trip, NCCL all-reduce model
and the TP-shard-to-machine conversion."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from characterize.modeling.network import NetworkError, allreduce_time
from characterize.modeling.profiles import (
    PROFILE_COLUMNS,
    SPLITWISE_CSV,
    ProfileError,
    is_shard_measurement,
    machine_profiles,
    metadata_path,
    read_metadata,
    read_profiles,
    reference_profiles,
    shard_to_machine,
    validate_profiles,
    write_profiles,
)
from characterize.modeling.specs import load_model


@pytest.fixture(scope="module")
def ref() -> pd.DataFrame:
    return reference_profiles()


@pytest.fixture(scope="module")
def raw() -> pd.DataFrame:
    return pd.read_csv(SPLITWISE_CSV)


def _row(df, **key):
    sel = np.ones(len(df), dtype=bool)
    for k, v in key.items():
        sel &= (df[k] == v).to_numpy()
    out = df[sel]
    assert len(out) == 1, key
    return out.iloc[0]


# ----------------------------------------------------------------------------- reference import


def test_reference_shape_and_groups(ref, raw):
    assert list(ref.columns) == PROFILE_COLUMNS
    groups = ref.groupby(["model", "gpu", "tp", "phase"]).size()
    # 12 (model, gpu, tp) groups x (13 prefill + 19 decode points)
    assert len(groups) == 24
    assert set(groups.xs("prefill", level="phase")) == {13}
    assert set(groups.xs("decode", level="phase")) == {19}
    assert len(ref) == 12 * 32
    assert set(ref["gpu"]) == {"a100-80gb", "h100-80gb", "h100-80gb-pcap"}
    assert set(ref["tp"]) == {2, 4, 8}
    # every source repeat is accounted for once per phase
    per_phase = ref.groupby("phase")["repeats"].sum()
    assert per_phase["prefill"] == per_phase["decode"] == len(raw)
    # validation passes and keys are unique
    assert not ref.duplicated(
        ["model", "gpu", "tp", "phase", "batch_size", "tokens_per_request"]
    ).any()


def test_reference_conversions(ref, raw):
    sel = (
        (raw.model == "llama2-70b")
        & (raw.hardware == "a100-80gb")
        & (raw.tensor_parallel == 8)
        & (raw.prompt_size == 2048)
        & (raw.batch_size == 1)
    )
    src = raw[sel]
    pre = _row(ref, model="llama2-70b", gpu="a100-80gb", tp=8, phase="prefill", batch_size=1,
               tokens_per_request=2048)  # fmt: skip
    assert pre["latency_s"] == pytest.approx(src.prompt_time.mean() / 1000.0, rel=1e-12)
    assert pre["latency_std_s"] == pytest.approx(src.prompt_time.std(ddof=1) / 1000.0, rel=1e-9)
    assert pre["repeats"] == len(src) == 5
    # power: normalized to TDP -> x 400 W x 8 GPUs; prefill takes the peak
    assert pre["power_w"] == pytest.approx(src.peak_power.mean() * 400 * 8)
    assert pre["energy_j"] == pytest.approx(pre["power_w"] * pre["latency_s"])
    # decode: context = prompt + token_size / 2 = 2048 + 64; latency = token_time
    dec = _row(ref, model="llama2-70b", gpu="a100-80gb", tp=8, phase="decode", batch_size=1,
               tokens_per_request=2048 + 64)  # fmt: skip
    assert dec["latency_s"] == pytest.approx(src.token_time.mean() / 1000.0, rel=1e-12)
    assert dec["power_w"] == pytest.approx(src.average_power.mean() * 400 * 8)


def test_reference_folds_shared_point_and_token_sweep(ref, raw):
    # prompt 512, batch 1 is in all three sweeps: one prefill row with every repeat
    sel = (raw.model == "bloom-176b") & (raw.hardware == "a100-80gb") & (raw.prompt_size == 512)
    sel &= raw.batch_size == 1
    pre = _row(ref, model="bloom-176b", gpu="a100-80gb", tp=8, phase="prefill", batch_size=1,
               tokens_per_request=512)  # fmt: skip
    assert pre["repeats"] == sel.sum() == 45
    # decode rows of the token sweep keep their own context (prompt + token_size / 2)
    for token_size in (256, 1024, 8192):
        dec = _row(ref, model="bloom-176b", gpu="a100-80gb", tp=8, phase="decode",
                   batch_size=1, tokens_per_request=512 + token_size // 2)  # fmt: skip
        assert dec["repeats"] == 5
        assert math.isnan(dec["power_w"])  # source power 0 = not recorded


def test_reference_h100_power_nan_and_pcap_flag(ref):
    h100 = ref[ref.gpu.str.startswith("h100")]
    assert h100["power_w"].isna().all() and h100["energy_j"].isna().all()
    a100 = ref[ref.gpu == "a100-80gb"]
    assert a100["power_w"].notna().sum() > 0.6 * len(a100)
    assert (a100["power_w"].dropna() <= 400 * a100.loc[a100["power_w"].notna(), "tp"] * 1.1).all()
    pcap = ref[ref.gpu == "h100-80gb-pcap"].set_index(
        ["model", "tp", "phase", "batch_size", "tokens_per_request"]
    )
    h = ref[ref.gpu == "h100-80gb"].set_index(pcap.index.names)
    assert pcap["source"].str.contains("derived: 1.3x h100 prompt").all()
    assert not h["source"].str.contains("derived").any()
    ratio = pcap["latency_s"] / h.loc[pcap.index, "latency_s"]
    assert np.allclose(ratio.xs("prefill", level="phase"), 1.3, rtol=1e-9)
    assert np.allclose(ratio.xs("decode", level="phase"), 1.0, rtol=1e-12)


# ----------------------------------------------------------------------------- validation


def _small() -> pd.DataFrame:
    return pd.DataFrame(
        [
            ["llama2-70b", "h100-80gb", 8, "prefill", 1, 512, 0.05, 5000.0, 250.0, 3, 0.001, "t"],
            ["llama2-70b", "h100-80gb", 8, "prefill", 2, 512, 0.08, 5100.0, 408.0, 3, 0.001, "t"],
            ["llama2-70b", "h100-80gb", 8, "decode", 1, 512, 0.03, 3000.0, 90.0, 3, 0.001, "t"],
        ],
        columns=PROFILE_COLUMNS,
    )


@pytest.mark.parametrize(
    ("mutate", "expect"),
    [
        (lambda d: d.assign(model=["llama2-70b", "gpt-9", "llama2-70b"]), "row 2: column 'model'"),
        (lambda d: d.assign(gpu="tpu-v9"), "row 1: column 'gpu': unknown gpu 'tpu-v9'"),
        (lambda d: d.assign(latency_s=[0.05, -1.0, 0.03]), "row 2: column 'latency_s'"),
        (lambda d: d.assign(latency_s=[0.05, 0.0, 0.03]), "must be finite and > 0"),
        (lambda d: d.assign(batch_size=[1, 2.5, 1]), "row 2: column 'batch_size'"),
        (lambda d: d.assign(phase=["prefill", "prefill", "prefil"]), "row 3: column 'phase'"),
        (lambda d: d.iloc[:2], "has no decode rows"),
        (lambda d: d.drop(columns=["latency_s"]), "missing column 'latency_s'"),
        (lambda d: d.assign(power_w=[5000.0, -3.0, 1.0]), "row 2: column 'power_w'"),
        (
            lambda d: d.assign(latency_s=["0.05", "fast", "0.03"]),
            "row 2: column 'latency_s': not a",
        ),
    ],
    ids=[
        "model",
        "unknown-gpu-name",
        "neg-latency",
        "zero-latency",
        "int",
        "phase",
        "missing-phase",
        "missing-col",
        "power",
        "text",
    ],  # fmt: skip
)
def test_validation_errors_are_one_line(mutate, expect):
    with pytest.raises(ProfileError) as e:
        validate_profiles(mutate(_small()), "x.csv")
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("x.csv")
    assert expect in msg


def test_duplicate_rows_are_reported_naming_both_rows():
    d = _small()
    dup = pd.concat([d, d.iloc[[0]]], ignore_index=True)  # identical: still reported
    with pytest.raises(ProfileError) as e:
        validate_profiles(dup, "x.csv")
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("x.csv: rows 1 and 4: duplicate point (model=llama2-70b, ")
    assert "batch_size=1, tokens_per_request=512" in msg
    bad = dup.copy()
    bad.loc[3, "latency_s"] = 0.07  # conflicting values: the same message
    with pytest.raises(ProfileError, match=r"x.csv: rows 1 and 4: duplicate point"):
        validate_profiles(bad, "x.csv")
    three = pd.concat([d, d.iloc[[0, 2]]], ignore_index=True)
    with pytest.raises(ProfileError, match=r"\(2 duplicate rows in all\)"):
        validate_profiles(three, "x.csv")


def test_optional_columns_may_be_absent(tmp_path):
    d = _small().drop(columns=["energy_j", "latency_std_s", "repeats"])
    out = validate_profiles(d, "x.csv")
    assert list(out.columns) == PROFILE_COLUMNS
    assert out["repeats"].tolist() == [1, 1, 1]
    assert out["latency_std_s"].isna().all()
    # energy of one iteration = power x latency when only the power is given
    assert out["energy_j"].tolist() == pytest.approx([5000.0 * 0.05, 5100.0 * 0.08, 3000 * 0.03])
    bare = _small().drop(columns=["power_w", "energy_j", "latency_std_s", "repeats"])
    p = tmp_path / "bare.csv"
    bare.to_csv(p, index=False)
    back = read_profiles(p)
    assert back["power_w"].isna().all() and back["energy_j"].isna().all()
    assert back["latency_s"].tolist() == [0.05, 0.08, 0.03]


def test_profile_folder_merges_every_table_and_names_them(tmp_path):
    from characterize.modeling.profiles import find_profile_tables, read_profile_source

    d = _small()
    write_profiles(d, tmp_path / "a" / "profiles.csv")
    write_profiles(d.assign(gpu="h200-141gb"), tmp_path / "b" / "deep" / "profiles.csv")
    (tmp_path / "a" / "infeasible.csv").write_text("model,gpu,tp,phase,reason\n")  # not a table
    (tmp_path / "notes.txt").write_text("x")
    files = find_profile_tables(tmp_path)
    assert files == [tmp_path / "a" / "profiles.csv", tmp_path / "b" / "deep" / "profiles.csv"]
    table, used = read_profile_source(str(tmp_path))
    assert used == files and len(table) == 6
    assert sorted(table["gpu"].unique()) == ["h100-80gb", "h200-141gb"]
    # one file as the source: itself
    assert read_profile_source(str(files[0]))[1] == [files[0]]
    # the same point in two tables: one line naming both files and rows
    write_profiles(d.iloc[[0, 2]], tmp_path / "c" / "profiles.csv")
    with pytest.raises(ProfileError) as e:
        read_profile_source(str(tmp_path))
    msg = str(e.value)
    assert "\n" not in msg
    assert f"{files[0]} row 1 and {tmp_path / 'c' / 'profiles.csv'} row 1" in msg
    (tmp_path / "empty").mkdir()
    with pytest.raises(ProfileError, match="no profile table under this folder"):
        find_profile_tables(tmp_path / "empty")
    with pytest.raises(ProfileError, match="no such profile file or folder"):
        find_profile_tables(tmp_path / "missing")


def test_machine_profile_gpu_names_are_valid():
    d = _small().assign(gpu="h100-80gb-pcap")
    assert len(validate_profiles(d)) == 3
    assert len(validate_profiles(d.assign(gpu="h200-141gb"))) == 3


def test_write_read_round_trip_atomic_with_metadata(tmp_path):
    d = _small()
    path = tmp_path / "sub" / "p.csv"
    write_profiles(d, path, metadata={"device": "H100", "engine": "harness"})
    back = read_profiles(path)
    pd.testing.assert_frame_equal(back, validate_profiles(d))
    assert read_metadata(path) == {"device": "H100", "engine": "harness"}
    assert metadata_path(path).name == "p.meta.json"
    assert sorted(p.name for p in path.parent.iterdir()) == ["p.csv", "p.meta.json"]  # no temp
    first = path.read_bytes()
    write_profiles(d, path)
    assert path.read_bytes() == first  # deterministic


def test_write_refuses_invalid_and_keeps_old_file(tmp_path):
    path = tmp_path / "p.csv"
    write_profiles(_small(), path)
    before = path.read_bytes()
    with pytest.raises(ProfileError):
        write_profiles(_small().assign(latency_s=-1.0), path)
    assert path.read_bytes() == before


def test_read_errors(tmp_path):
    with pytest.raises(ProfileError, match="no such profile file"):
        read_profiles(tmp_path / "missing.csv")
    p = tmp_path / "bad.csv"
    p.write_text("model,gpu\nllama2-70b,h100-80gb\n")
    with pytest.raises(ProfileError, match=r"bad.csv: missing column 'tp'"):
        read_profiles(p)


# ----------------------------------------------------------------------------- network


def test_allreduce_monotone_and_mapped():
    sizes = [2**k for k in range(10, 31)]
    for fam in ("a100", "h100"):
        for tp in (2, 4, 8):
            t = [allreduce_time(fam, tp, s) for s in sizes]
            assert all(b >= a for a, b in zip(t, t[1:], strict=False)), (fam, tp)
            assert 1e-6 < t[0] < 1e-3  # tens of microseconds for tiny buffers
            # beyond the table (64 MiB): bandwidth-bound, proportional to size
            assert t[-1] / t[-2] == pytest.approx(2.0, rel=1e-9)
    # H200 nodes use the DGX-H100 table; gpu names map to their family
    assert allreduce_time("h200", 8, 1e7) == allreduce_time("h100-80gb", 8, 1e7)
    assert allreduce_time("a100-80gb", 8, 1e7) > allreduce_time("h100", 8, 1e7)
    assert allreduce_time("a100", 1, 1e9) == 0.0
    with pytest.raises(NetworkError):
        allreduce_time("a100", 3, 1e6)
    with pytest.raises(NetworkError):
        allreduce_time("mi300", 8, 1e6)


def test_allreduce_close_to_measured_median():
    from characterize.modeling.network import NETWORK_DIR

    df = pd.read_csv(NETWORK_DIR / "h100_dgx" / "all_reduce.csv")
    df = df[(df.num_workers == 8) & (df.devices_per_node == 8)]
    big = df[df["size"] > 2**24]
    pred = np.array([allreduce_time("h100", 8, s) for s in big["size"]])
    meas = big["time_stats.all_reduce.median"].to_numpy() / 1000.0
    assert np.median(np.abs(pred / meas - 1)) < 0.05


def test_shard_to_machine_adds_allreduce_and_scales_power():
    shard = _small().assign(tp=1, power_w=[600.0, 620.0, 400.0])
    shard["energy_j"] = shard["power_w"] * shard["latency_s"]
    out = shard_to_machine(shard, 8, "h100-80gb")
    spec = load_model("llama2-70b")
    assert (out["tp"] == 8).all()
    # prefill batch 2 x 512 tokens: 2 all-reduces per layer of 1024 x hidden x 2 bytes
    expect = 0.08 + 2 * spec.num_layers * allreduce_time("h100", 8, 1024 * spec.hidden_size * 2)
    assert out.loc[1, "latency_s"] == pytest.approx(expect)
    # decode batch 1: one token
    expect = 0.03 + 2 * spec.num_layers * allreduce_time("h100", 8, 1 * spec.hidden_size * 2)
    assert out.loc[2, "latency_s"] == pytest.approx(expect)
    assert out["power_w"].tolist() == [4800.0, 4960.0, 3200.0]
    assert np.allclose(out["energy_j"], out["power_w"] * out["latency_s"])
    assert out["source"].str.contains("nccl allreduce").all()
    # a callable all-reduce model works too
    flat = shard_to_machine(shard, 4, lambda nbytes: 1e-4)
    assert flat.loc[0, "latency_s"] == pytest.approx(0.05 + 2 * 80 * 1e-4)
    with pytest.raises(ProfileError, match="must be 1 or 8"):
        shard_to_machine(shard.assign(tp=2), 8, "h100")


def test_shard_to_machine_keeps_instance_power_of_tp_rows():
    """The profiler writes tp-k rows whose power is already the instance's (one GPU x k)."""
    shard = _small()  # tp 8 rows, instance power
    out = shard_to_machine(shard, 8, "h100-80gb")
    assert out["power_w"].tolist() == shard["power_w"].tolist()
    assert (out["latency_s"] > shard["latency_s"]).all()
    assert np.allclose(out["energy_j"], out["power_w"] * out["latency_s"])


def test_machine_profiles_adds_allreduce_to_shard_rows_only():
    shard = _small().assign(
        source="h100-80gb (H100); splitbench-native bf16 cuda-graphs; tp8 shard"
    )
    ref = _small().assign(source="splitwise-paper-dgx")
    both = pd.concat([shard, ref.assign(gpu="a100-80gb")], ignore_index=True)
    out = machine_profiles(both)
    spec = load_model("llama2-70b")
    ar = 2 * spec.num_layers * allreduce_time("h100", 8, 1 * spec.hidden_size * 2)
    assert out.loc[2, "latency_s"] == pytest.approx(0.03 + ar)  # shard decode row
    assert out.loc[3:, "latency_s"].tolist() == ref["latency_s"].tolist()  # reference kept
    assert out.loc[:2, "source"].str.contains("nccl allreduce").all()
    # converting twice adds nothing more
    assert machine_profiles(out)["latency_s"].tolist() == out["latency_s"].tolist()
    assert is_shard_measurement("x; tp8 shard, layers 8/80 scaled")
    assert not is_shard_measurement("x; tp8 shard + nccl allreduce (vidur h100_dgx, tp=8)")
