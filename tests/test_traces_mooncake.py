"""Mooncake traces: block hashes through loading, transforms and the reuse statistics."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import traces
from traces import transforms as T
from traces.cli import main
from traces.stats import block_reuse, describe

# requests in arrival order (ids of their prompts' blocks)
SEQ = [(1, 2, 3), (1, 2, 4), (5,), (1, 2, 3)]


def test_block_reuse_unbounded_by_hand():
    # r1 finds 1, 2; r3 finds 1, 2, 3: 5 of 10 blocks seen before
    r = block_reuse(SEQ)
    assert r == {"blocks": 10, "hits": 5, "prefix_hits": 5, "seen_share": 0.5, "prefix_share": 0.5}


def test_block_reuse_lru_by_hand():
    # LRU of 3, a request's blocks touched last to first (LRU -> MRU):
    # r0 -> [3, 2, 1]; r1 finds 1, 2, misses 4 -> [4, 2, 1] (3 evicted); r2 misses 5 ->
    # [2, 1, 5] (4 evicted); r3 finds 1, 2, misses 3: 4 hits of 10
    r = block_reuse(SEQ, 3)
    assert (r["hits"], r["prefix_hits"], r["seen_share"]) == (4, 4, 0.4)
    # LRU of 1 keeps a request's first block only: r1 finds 1; r2 evicts it; r3 finds none
    assert block_reuse(SEQ, 1)["hits"] == 1
    # a cache as large as all distinct blocks is the unbounded one
    assert block_reuse(SEQ, 5) == block_reuse(SEQ)


def test_block_reuse_prefix_differs_from_seen():
    # 3 was seen, but behind a new first block: a prefix cache cannot reuse it
    r = block_reuse([(1, 3), (9, 3), (1, 3, 3)])
    # r1: 3 found (not prefix); r2: 1, 3 found (prefix), the second 3 found (prefix)
    assert (r["blocks"], r["hits"], r["prefix_hits"]) == (7, 4, 3)
    assert math.isnan(block_reuse([(), ()])["seen_share"])


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "8"])
def test_block_reuse_bad_capacity(bad):
    with pytest.raises(traces.TraceError, match="cache blocks must be a positive integer"):
        block_reuse(SEQ, bad)


@pytest.mark.parametrize(
    ("name", "n", "seen", "span", "prompt_max"),
    [
        ("mooncake-conversation", 12031, 0.366, 3537, 126195),
        ("mooncake-synthetic", 3993, 0.640, 1022, 191378),
    ],
)
def test_bundled_mooncake(name, n, seen, span, prompt_max):
    df = traces.load(name)
    assert len(df) == n and list(df["request_id"]) == list(range(n))
    assert df.attrs["block_tokens"] == 512
    blocks = df["block_hashes"].map(len).to_numpy()
    assert (blocks == -(-df["prompt_tokens"].to_numpy() // 512)).all()
    s = describe(df, [10_000])
    assert (
        s["requests"] == n and round(s["span_s"]) == span and s["prompt_tokens_max"] == prompt_max
    )
    assert s["reuse_seen_unbounded"] == pytest.approx(seen, abs=5e-4)
    assert s["reuse_prefix_unbounded"] == s["reuse_seen_unbounded"]  # ids are prefix hashes
    assert s["reuse_seen_lru_10000"] < s["reuse_seen_unbounded"]


def test_transforms_carry_block_hashes():
    df = traces.load("mooncake-synthetic")
    by_id = dict(zip(df["request_id"], df["block_hashes"], strict=True))
    w = T.window(df, 100.0, 400.0)
    assert w.attrs["block_tokens"] == 512
    assert [by_id[i] for i in w["request_id"]] == w["block_hashes"].tolist()
    s = T.scale_rate(w, 10.0)
    assert s["block_hashes"].tolist() == w["block_hashes"].tolist()
    # re-sampling draws whole requests: each row's hashes are its source request's
    r = T.resample(df, 5.0, num_requests=500, seed=3)
    pairs = {(p, o, h) for p, o, h in df[["prompt_tokens", "output_tokens", "block_hashes"]].values}
    assert all(
        (p, o, h) in pairs
        for p, o, h in r[["prompt_tokens", "output_tokens", "block_hashes"]].values
    )
    assert r.attrs["block_tokens"] == 512
    again = T.resample(df, 5.0, num_requests=500, seed=3)
    assert again["block_hashes"].tolist() == r["block_hashes"].tolist()
    # reject keeps the rest unchanged; clip keeps only the whole blocks of a clipped prompt
    kept, n = T.limit_context(df, 8192, "reject")
    assert n > 0 and [by_id[i] for i in kept["request_id"]] == kept["block_hashes"].tolist()
    clipped, _ = T.limit_context(df, 1000, "clip")
    long = df["prompt_tokens"].to_numpy() > 999
    assert (clipped["block_hashes"].map(len).to_numpy()[long] == 999 // 512).all()
    assert clipped["block_hashes"][~long].tolist() == df["block_hashes"][~long].tolist()
    t, info = T.prepare("mooncake-conversation", start_s=0, end_s=600, resample_rate=2.0, seed=1)
    assert "block_hashes" in t.columns and info["block_tokens"] == 512
    # a table without hashes stays without
    assert "block_hashes" not in T.prepare("azure-code-2023", end_s=60)[0].columns


def test_hashes_checked_against_prompt_length(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_text(
        json.dumps({"timestamp": 0, "input_length": 600, "output_length": 1, "hash_ids": [1, 2]})
        + "\n"
        + json.dumps({"timestamp": 5, "input_length": 512, "output_length": 1, "hash_ids": [1, 2]})
    )
    with pytest.raises(traces.TraceError, match=r"data row 2, column 'hash_ids'.*at most 1"):
        traces.load(p)


def test_mooncake_without_hashes_is_fine(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_text(json.dumps({"timestamp": 0, "input_length": 600, "output_length": 1}) + "\n")
    df = traces.load(p)
    assert "block_hashes" not in df.columns and len(df) == 1


def test_check_table_keeps_hashes_and_numpy_cells():
    df = traces.load("mooncake-synthetic").iloc[:3].copy()
    df["block_hashes"] = [np.array(h, dtype="int64") for h in df["block_hashes"]]
    back = traces.check_table(df)
    assert back["block_hashes"].tolist() == [tuple(h.tolist()) for h in df["block_hashes"]]
    assert all(type(x) is int for h in back["block_hashes"] for x in h)
    df["block_hashes"] = [tuple(np.int64(x) for x in h) for h in back["block_hashes"]]
    assert all(type(x) is int for h in traces.check_table(df)["block_hashes"] for x in h)
    df.loc[1, "block_hashes"] = (1, 2**64)
    with pytest.raises(traces.TraceError, match=r"data row 2, column 'block_hashes'.*64 bits"):
        traces.check_table(df)
    assert back.attrs["block_tokens"] == 512


def test_cli_describe_mooncake(capsys):
    assert main(["describe", "mooncake-conversation", "--cache-blocks", "1000", "50000"]) == 0
    out = capsys.readouterr().out
    assert "requests                   12,031" in out
    assert "512-token blocks: 288,500, 182,790 distinct" in out
    assert "unbounded cache" in out and "36.6%" in out
    assert "LRU 1,000 blocks" in out and "LRU 50,000 blocks" in out
    assert main(["describe", "mooncake-synthetic", "--json", "--cache-blocks", "2000"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["requests"] == 3993 and stats["block_tokens"] == 512
    assert round(stats["reuse_seen_unbounded"], 3) == 0.640
    assert 0 < stats["reuse_seen_lru_2000"] < stats["reuse_seen_unbounded"]


def test_cli_cache_blocks_errors(capsys):
    assert main(["describe", "azure-code-2023", "--cache-blocks", "100"]) == 2
    assert "--cache-blocks: azure-code-2023 has no block hashes" in capsys.readouterr().err
    assert main(["describe", "mooncake-synthetic", "--cache-blocks", "0"]) == 2
    assert "--cache-blocks: must be a positive integer" in capsys.readouterr().err
    with pytest.raises(traces.TraceError, match="no block hashes"):
        describe(traces.load("azure-code-2023"), [100])


def test_save_parquet_keeps_block_hashes(tmp_path, capsys):
    df = traces.load("mooncake-synthetic")
    back = traces.load(traces.save(df, tmp_path / "m.parquet"))
    assert back["block_hashes"].tolist() == df["block_hashes"].tolist()
    assert back.attrs["block_tokens"] == 512
    assert back[list(traces.COLUMNS)].equals(df[list(traces.COLUMNS)])
    a = traces.save(df, tmp_path / "a.parquet").read_bytes()
    assert a == traces.save(df, tmp_path / "b.parquet").read_bytes()  # deterministic
    csv = traces.load(traces.save(df, tmp_path / "m.csv"))  # CSV: contract columns only
    assert "block_hashes" not in csv.columns and len(csv) == len(df)
    assert main(["convert", "mooncake-synthetic", str(tmp_path / "c.parquet")]) == 0
    assert "block_hashes" in traces.load(tmp_path / "c.parquet").columns
