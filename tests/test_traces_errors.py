"""Bad trace input: one-line TraceError naming file, data row (1-based, header not counted)
and column, and the CLI's `error: ...` with exit status 2."""

from __future__ import annotations

import pytest

import traces
from traces.cli import main

HEADER = "request_id,arrival_s,prompt_tokens,output_tokens\n"
AZURE = "TIMESTAMP,ContextTokens,GeneratedTokens\n"

# (file name, content, expected message fragments)
CASES = {
    "missing_column": (
        "t.csv",
        "request_id,arrival_s,prompt_tokens\n0,0.0,5\n",
        ["missing column(s) ['output_tokens'] of the splitbench format", "prompt_tokens"],
    ),
    "missing_column_explicit_fmt": (
        "t.csv",
        AZURE.replace(",GeneratedTokens", "") + "2023-11-16 18:17:03.9799600,5\n",
        ["missing column(s) ['GeneratedTokens']"],
    ),
    "non_numeric": (
        "t.csv",
        HEADER + "0,0.0,5,1\n1,0.5,abc,1\n",
        ["data row 2, column 'prompt_tokens'", "non-numeric value 'abc'"],
    ),
    "nan_value": (
        "t.csv",
        HEADER + "0,0.0,5,1\n1,0.5,6,1\n2,,6,1\n",
        ["data row 3, column 'arrival_s'", "missing value"],
    ),
    "nan_literal": (
        "t.csv",
        HEADER + "0,0.0,5,NaN\n",
        ["data row 1, column 'output_tokens'"],
    ),
    "zero_tokens": (
        "t.csv",
        HEADER + "0,0.0,5,1\n1,0.5,0,1\n",
        ["data row 2, column 'prompt_tokens'", "must be >= 1, got 0"],
    ),
    "negative_tokens_source_column": (
        "az.csv",
        AZURE + "2023-11-16 18:17:03.9799600,5,1\n2023-11-16 18:17:04.0,7,-3\n",
        ["data row 2, column 'GeneratedTokens' (output_tokens)", "must be >= 1, got -3"],
    ),
    "fractional_tokens": (
        "t.csv",
        HEADER + "0,0.0,5.5,1\n",
        ["data row 1, column 'prompt_tokens'", "not an integer"],
    ),
    "out_of_order": (
        "t.csv",
        HEADER + "0,0.0,5,1\n1,2.0,5,1\n2,1.0,5,1\n",
        ["data row 3, column 'arrival_s'", "earlier than data row 2", "sort=True"],
    ),
    "negative_arrival": (
        "t.csv",
        HEADER + "0,-1.0,5,1\n",
        ["data row 1, column 'arrival_s'", "negative arrival"],
    ),
    "duplicate_ids": (
        "t.csv",
        HEADER + "0,0.0,5,1\n1,0.5,5,1\n0,0.7,5,1\n",
        ["data row 3, column 'request_id'", "duplicate request id 0 (first at data row 1)"],
    ),
    "bad_timestamp": (
        "az.csv",
        AZURE + "2023-11-16 18:17:03.9799600,5,1\nyesterday,5,1\n",
        ["data row 2, column 'TIMESTAMP' (arrival_s)", "cannot parse timestamp 'yesterday'"],
    ),
    "empty_file": ("t.csv", "", ["empty file"]),
    "extra_field": (
        "t.csv",
        HEADER + "0,0.0,5,1\n1,0.5,5,1,9\n",
        ["data row 2: expected 4 fields (the header's), saw 5"],
    ),
    "not_parquet": ("t.parquet", "this is text", ["cannot read", "ArrowInvalid"]),
    "header_only": ("t.csv", HEADER, ["empty trace (no data rows)"]),
    "bad_json": (
        "m.jsonl",
        '{"timestamp": 0, "input_length": 5, "output_length": 1}\n{"timestamp": 1,\n',
        ["data row 2", "invalid JSON"],
    ),
    "mooncake_missing_key": (
        "m.jsonl",
        '{"timestamp": 0, "input_length": 5, "output_length": 1}\n'
        '{"timestamp": 10, "input_length": 5}\n',
        ["data row 2, column 'output_length' (output_tokens)", "missing value"],
    ),
    "infinite": (
        "t.csv",
        HEADER + "0,inf,5,1\n",
        ["data row 1, column 'arrival_s'", "infinite value"],
    ),
}


def _write(tmp_path, case):
    name, content, expected = CASES[case]
    path = tmp_path / name
    path.write_text(content)
    return path, expected


@pytest.mark.parametrize("case", sorted(CASES))
def test_load_error_names_file_row_column(tmp_path, case):
    path, expected = _write(tmp_path, case)
    fmt = "azure" if case == "missing_column_explicit_fmt" else None
    with pytest.raises(traces.TraceError) as info:
        traces.load(path, fmt)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(str(path)), msg
    for fragment in expected:
        assert fragment in msg, (fragment, msg)


@pytest.mark.parametrize("case", sorted(CASES))
def test_cli_error_exit_2_one_line(tmp_path, capsys, case):
    path, expected = _write(tmp_path, case)
    argv = ["describe", str(path)]
    if case == "missing_column_explicit_fmt":
        argv += ["--format", "azure"]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert str(path) in err
    for fragment in expected:
        assert fragment in err
    assert "Traceback" not in err


def test_unknown_name_lists_known(capsys):
    with pytest.raises(traces.TraceError, match="azure-code-2023, azure-conv-2023"):
        traces.load("azure-chat-2099")
    assert main(["describe", "azure-chat-2099"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown trace name 'azure-chat-2099'")
    assert "azure-conv-2023" in err


def test_missing_file(tmp_path, capsys):
    missing = tmp_path / "nope.csv"
    with pytest.raises(traces.TraceError, match="no such file"):
        traces.load(missing)
    assert main(["convert", str(missing), str(tmp_path / "o.csv")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_undetectable_format_lists_formats(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(traces.TraceError, match="known formats: splitbench: request_id"):
        traces.load(p)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"fmt": "nonsense"}, "unknown trace format 'nonsense'"),
        ({"fmt": "generic"}, "needs a column mapping"),
        ({"fmt": "vidur", "mapping": {"arrival_s": "a"}}, "goes with fmt='generic'"),
        ({"time_unit": "ms"}, "time_unit applies to fmt='generic'"),
        (
            {"mapping": {"arrival_s": "a", "prompt_tokens": "b"}},
            "no source column given for ['output_tokens']",
        ),
        (
            {"mapping": {"arrival": "a", "prompt_tokens": "b", "output_tokens": "c"}},
            "unknown target column",
        ),
        (
            {
                "mapping": {"arrival_s": "a", "prompt_tokens": "b", "output_tokens": "c"},
                "time_unit": "fortnight",
            },
            "unknown time unit 'fortnight'",
        ),
    ],
)
def test_bad_arguments(tmp_path, kwargs, fragment):
    p = tmp_path / "t.csv"
    p.write_text(HEADER + "0,0.0,5,1\n")
    with pytest.raises(traces.TraceError) as info:
        traces.load(p, **kwargs)
    assert fragment in str(info.value)


def test_cli_usage_errors_are_one_line(capsys, tmp_path):
    assert main(["describe"]) == 2
    assert main(["frobnicate", "x"]) == 2
    assert main(["describe", "azure-code-2023", "--format", "excel"]) == 2
    assert main(["describe", str(tmp_path / "x.csv"), "--map", "arrival_s"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 4 and all(line.startswith("error: ") for line in err)
    assert "TARGET=SOURCE" in err[-1]
