"""splitbench-traces end to end (in-process main([...])), python -m traces, import hygiene."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import traces
from traces.cli import main


def test_describe_table(capsys):
    assert main(["describe", "azure-code-2023"]) == 0
    out = capsys.readouterr().out
    assert "requests                   8,819" in out
    assert "inter-arrival CV           13.15" in out
    assert "mean rate (req/s)          2.567" in out
    assert "prompt  2,048  1,469  5,188" in out


def test_describe_json(capsys):
    assert main(["describe", "azure-conv-2023", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["trace"] == "azure-conv-2023"
    assert data["requests"] == 19366
    assert round(data["mean_rate_rps"], 2) == 5.53
    assert round(data["interarrival_cv"], 2) == 1.09
    assert data["output_tokens_p50"] == 129


def test_describe_file_with_format_and_sort(tmp_path, capsys):
    p = tmp_path / "v.csv"
    p.write_text("arrived_at,num_prefill_tokens,num_decode_tokens\n2.0,10,1\n1.0,20,2\n")
    assert main(["describe", str(p), "--format", "vidur"]) == 2
    assert "data row 2, column 'arrived_at' (arrival_s)" in capsys.readouterr().err
    assert main(["describe", str(p), "--format", "vidur", "--sort", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["requests"] == 2 and data["span_s"] == 1.0


def test_describe_generic_via_map(tmp_path, capsys):
    p = tmp_path / "g.csv"
    p.write_text("t_ms,a,b\n0,5,1\n500,6,2\n1000,7,3\n")
    argv = ["describe", str(p), "--map", "arrival_s=t_ms,prompt_tokens=a,output_tokens=b"]
    assert main([*argv, "--time-unit", "ms", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["span_s"] == 1.0 and data["mean_rate_rps"] == 3.0


@pytest.mark.parametrize("ext", [".csv", ".parquet"])
def test_convert_roundtrip(tmp_path, capsys, ext):
    src = tmp_path / "mooncake.jsonl"
    src.write_text(
        '{"timestamp": 0, "input_length": 100, "output_length": 5, "hash_ids": [1]}\n'
        '{"timestamp": 250, "input_length": 200, "output_length": 6, "hash_ids": [2]}\n'
    )
    out = tmp_path / f"out{ext}"
    assert main(["convert", str(src), str(out)]) == 0
    assert "2 requests" in capsys.readouterr().out
    back = traces.load(out)
    assert back["arrival_s"].tolist() == [0.0, 0.25]
    assert back["prompt_tokens"].tolist() == [100, 200]
    assert main(["convert", str(src), str(tmp_path / "o.txt")]) == 2
    assert "unsupported output extension" in capsys.readouterr().err


def test_convert_bundled_and_from(tmp_path):
    out = tmp_path / "code.csv"
    assert main(["convert", "azure-code-2023", str(out)]) == 0
    assert traces.load(out).equals(traces.load("azure-code-2023"))
    assert main(["convert", str(out), str(tmp_path / "again.parquet"), "--from", "splitbench"]) == 0
    assert traces.load(tmp_path / "again.parquet").equals(traces.load("azure-code-2023"))


def test_plot_writes_pngs(tmp_path, capsys):
    pytest.importorskip("seaborn")
    assert main(["plot", "azure-code-2023", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out.split()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["azure-code-2023_arrival_rate.png", "azure-code-2023_tokens_cdf.png"]
    assert len(printed) == 2
    for p in tmp_path.iterdir():
        head = p.read_bytes()[:8]
        assert head == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000


def test_import_is_light():
    code = (
        "import traces, traces.cli, traces.transforms, traces.stats, sys; "
        "bad = [m for m in ('torch', 'transformers', 'seaborn', 'matplotlib', 'hydra') "
        "if m in sys.modules]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_python_m_traces(tmp_path):
    ok = subprocess.run(
        [sys.executable, "-m", "traces", "describe", "azure-code-2023", "--json"],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0 and json.loads(ok.stdout)["requests"] == 8819
    bad = subprocess.run(
        [sys.executable, "-m", "traces", "describe", str(tmp_path / "missing.csv")],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: ") and bad.stderr.count("\n") == 1
