"""traces.load / traces.save: bundled Azure traces and every file format (contract 1)."""

from __future__ import annotations

import hashlib
import json
from importlib import resources

import numpy as np
import pandas as pd
import pytest

import traces
from traces.bundled import BUNDLED, data_file
from traces.formats import detect_format

SHA256 = {
    "azure-code-2023": "54e9a6d2a4bd06ba1e060304b900abbc74cbea53de96506e60fe5bb4f2277fb6",
    "azure-conv-2023": "2f1e5b666d4e3055fdbba98598ce2ec307767b9064e03e2fa46676dbcc7d0bf8",
    "mooncake-conversation": "b8cbb061a85206d729d91cdc2981f43c9e0d99209dce588d3af5f7934408b9df",
    "mooncake-synthetic": "bd070915a98fc0ed264d7cfef2ce746002eb3076a695ec31ba2674c0111ec131",
}


def assert_contract(df: pd.DataFrame, *, block_hashes: bool = False) -> None:
    extra = ["block_hashes"] if block_hashes else []
    assert list(df.columns) == [*traces.COLUMNS, *extra]
    assert [str(t) for t in df.dtypes] == ["int64", "float64", "int64", "int64"] + [
        "object" for _ in extra
    ]
    assert df["request_id"].is_unique
    assert df["arrival_s"].is_monotonic_increasing
    assert (df["prompt_tokens"] >= 1).all() and (df["output_tokens"] >= 1).all()
    assert isinstance(df.index, pd.RangeIndex) and df.index.start == 0


@pytest.mark.parametrize(
    ("name", "n", "p50_prompt", "p50_output"),
    [("azure-code-2023", 8819, 1469, 13), ("azure-conv-2023", 19366, 1020, 129)],
)
def test_bundled_azure(name, n, p50_prompt, p50_output):
    df = traces.load(name)
    assert_contract(df)
    assert len(df) == n
    assert df["prompt_tokens"].median() == p50_prompt
    assert df["output_tokens"].median() == p50_output
    assert df["arrival_s"].iloc[0] == 0.0
    assert list(df["request_id"]) == list(range(n))


def test_bundled_files_unchanged_and_packaged():
    for name, digest in SHA256.items():
        node = data_file(name)
        assert hashlib.sha256(node.read_bytes()).hexdigest() == digest
    readme = resources.files("traces").joinpath("data", "azure-llm-2023", "README.md").read_text()
    assert "CC BY 4.0" in readme and "Splitwise" in readme
    moon = resources.files("traces").joinpath("data", "mooncake-fast25")
    readme = moon.joinpath("README.md").read_text()
    assert "Apache License 2.0" in readme and "Mooncake" in readme and "FAST 2025" in readme
    assert "Apache License" in moon.joinpath("LICENSE-APACHE").read_text()
    assert SHA256["mooncake-conversation"] in readme and SHA256["mooncake-synthetic"] in readme
    assert traces.list_traces() == list(BUNDLED) == list(SHA256)


def test_azure_timestamp_parsing_exact():
    """7 fractional digits (100 ns) survive: gaps of the first rows of the code trace."""
    df = traces.load("azure-code-2023")
    # 18:17:03.9799600, 18:17:04.0319600 -> 0.052 s
    assert df["arrival_s"].iloc[1] == pytest.approx(0.052, abs=1e-9)
    assert df["arrival_s"].iloc[-1] == pytest.approx(3435.948056, abs=1e-6)


def test_bundled_cache_returns_copies():
    a = traces.load("azure-code-2023")
    a.loc[0, "prompt_tokens"] = -5
    a["arrival_s"] += 100.0
    b = traces.load("azure-code-2023")
    assert b.loc[0, "prompt_tokens"] == 4808
    assert b["arrival_s"].iloc[0] == 0.0


def test_azure_file_with_fraction_variants(tmp_path):
    p = tmp_path / "az.csv"
    p.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2023-11-16 18:17:03.9799600,10,2\n"
        "2023-11-16 18:17:04,20,3\n"
        "2023-11-16 18:17:04.5,30,4"
    )
    df = traces.load(p)
    assert_contract(df)
    np.testing.assert_allclose(df["arrival_s"], [0.0, 0.02004, 0.52004], atol=1e-9)


def test_splitwise_format(tmp_path):
    p = tmp_path / "rr_code_70.csv"
    p.write_text(
        "request_id,request_type,application_id,arrival_timestamp,batch_size,prompt_size,token_size\n"
        "0,2,0,0.010,1,1500,12\n"
        "1,2,0,0.250,1,300,40\n"
        "2,2,0,0.250,1,7000,2\n"
    )
    assert detect_format(pd.read_csv(p).columns) == "splitwise"
    df = traces.load(p)
    assert_contract(df)
    assert df["arrival_s"].tolist() == [0.010, 0.250, 0.250]
    assert df["prompt_tokens"].tolist() == [1500, 300, 7000]
    assert df["output_tokens"].tolist() == [12, 40, 2]


def test_vidur_format(tmp_path):
    p = tmp_path / "vidur.csv"
    p.write_text(
        "arrived_at,num_prefill_tokens,num_decode_tokens,num_total_tokens\n"
        "0.0,100,5,105\n1.5,200.0,6,206\n2.25,300,7,307\n"
    )
    df = traces.load(p)
    assert_contract(df)
    assert df["arrival_s"].tolist() == [0.0, 1.5, 2.25]
    assert df["prompt_tokens"].tolist() == [100, 200, 300]
    assert df["request_id"].tolist() == [0, 1, 2]


def test_mooncake_jsonl(tmp_path):
    p = tmp_path / "mooncake_trace.jsonl"
    rows = [
        {"timestamp": 0, "input_length": 6955, "output_length": 52, "hash_ids": [0, 1, 2]},
        {"timestamp": 1500, "input_length": 6472, "output_length": 26, "hash_ids": [0, 3]},
        {"timestamp": 2750, "input_length": 9, "output_length": 1, "hash_ids": []},
    ]
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    df = traces.load(p)
    assert_contract(df, block_hashes=True)
    assert df["arrival_s"].tolist() == [0.0, 1.5, 2.75]
    assert df["prompt_tokens"].tolist() == [6955, 6472, 9]
    assert df["output_tokens"].tolist() == [52, 26, 1]
    assert df["block_hashes"].tolist() == [(0, 1, 2), (0, 3), ()]
    assert df.attrs["block_tokens"] == 512
    # explicit fmt works for another extension too
    q = tmp_path / "trace.txt"
    q.write_text(p.read_text())
    assert traces.load(q, "mooncake").equals(df)


@pytest.mark.parametrize(("unit", "scale"), [("s", 1.0), ("ms", 1e-3), ("us", 1e-6)])
def test_generic_mapping(tmp_path, unit, scale):
    p = tmp_path / "mine.csv"
    p.write_text("id,ts,in,out,extra\n7,100,10,1,x\n3,250,20,2,y\n9,250,30,3,z\n")
    mapping = {"request_id": "id", "arrival_s": "ts", "prompt_tokens": "in", "output_tokens": "out"}
    df = traces.load(p, mapping=mapping, time_unit=unit)
    assert_contract(df)
    np.testing.assert_allclose(df["arrival_s"], np.array([100, 250, 250]) * scale)
    assert df["request_id"].tolist() == [7, 3, 9]
    # request_id is optional
    del mapping["request_id"]
    df2 = traces.load(p, "generic", mapping=mapping, time_unit=unit)
    assert df2["request_id"].tolist() == [0, 1, 2]


def test_generic_datetime(tmp_path):
    p = tmp_path / "log.csv"
    p.write_text("when,p,o\n2024-01-01T00:00:10Z,5,5\n2024-01-01T00:00:12.25Z,6,6\n")
    df = traces.load(
        p,
        mapping={"arrival_s": "when", "prompt_tokens": "p", "output_tokens": "o"},
        time_unit="datetime",
    )
    assert df["arrival_s"].tolist() == [0.0, 2.25]


def test_sort_keeps_ids_and_is_stable(tmp_path):
    p = tmp_path / "unsorted.csv"
    p.write_text(
        "request_id,arrival_s,prompt_tokens,output_tokens\n"
        "10,2.0,1,1\n11,1.0,2,2\n12,1.0,3,3\n13,0.5,4,4\n"
    )
    with pytest.raises(traces.TraceError, match="data row 2"):
        traces.load(p)
    df = traces.load(p, sort=True)
    assert_contract(df)
    assert df["request_id"].tolist() == [13, 11, 12, 10]
    assert df["prompt_tokens"].tolist() == [4, 2, 3, 1]


@pytest.mark.parametrize("ext", [".csv", ".parquet"])
def test_save_roundtrip_exact(tmp_path, ext):
    src = traces.load("azure-conv-2023").iloc[:500]
    src = src.assign(arrival_s=src["arrival_s"] * np.pi, request_id=src["request_id"] * 3 + 1)
    out = traces.save(src, tmp_path / "sub" / f"t{ext}")
    back = traces.load(out)
    assert back.equals(src.reset_index(drop=True))
    assert not [f for f in (tmp_path / "sub").iterdir() if f.name.endswith(".tmp")]
    assert (out.stat().st_mode & 0o777) != 0o600  # normal permissions, not mkstemp's


def test_save_is_deterministic_and_drops_extra_columns(tmp_path):
    df = traces.load("azure-code-2023").iloc[:100].assign(note="x")
    a = traces.save(df, tmp_path / "a.csv").read_bytes()
    b = traces.save(df, tmp_path / "b.csv").read_bytes()
    assert a == b
    assert a.splitlines()[0] == b"request_id,arrival_s,prompt_tokens,output_tokens"


def test_save_rejects_bad_table_and_extension(tmp_path):
    df = traces.load("azure-code-2023").iloc[:10].copy()
    with pytest.raises(traces.TraceError, match="unsupported output extension"):
        traces.save(df, tmp_path / "t.xlsx")
    df.loc[3, "output_tokens"] = 0
    with pytest.raises(traces.TraceError, match=r"data row 4, column 'output_tokens'"):
        traces.save(df, tmp_path / "t.csv")
    assert not (tmp_path / "t.csv").exists()
