"""Bad inputs of splitbench-traces (collected by tests/test_bad_inputs.py; format in COMMON.md)."""

_HEADER = "request_id,arrival_s,prompt_tokens,output_tokens\n"

CASES = [
    {"id": "traces-huge-tokens", "argv": ["splitbench-traces", "describe", "{tmp}/big.csv"],
     "expect": "big.csv: data row 1, column 'output_tokens': too large: '1e23'",
     "files": {"big.csv": _HEADER + "0,0.0,10,1e23\n"}, "exit": 2},
    {"id": "traces-directory", "argv": ["splitbench-traces", "describe", "{tmp}/adir"],
     "expect": "adir: is a directory, not a trace file",
     "files": {"adir/readme.txt": "x\n"}, "exit": 2},
    {"id": "traces-missing-column", "argv": ["splitbench-traces", "describe", "{tmp}/m.csv"],
     "expect": "missing column(s) ['output_tokens']",
     "files": {"m.csv": "request_id,arrival_s,prompt_tokens\n0,0.0,10\n"}, "exit": 2},
    {"id": "traces-azure-missing-column", "argv": ["splitbench-traces", "describe", "{tmp}/a.csv"],
     "expect": "missing column(s) ['GeneratedTokens'] of the azure format",
     "files": {"a.csv": "TIMESTAMP,ContextTokens\n2023-11-16 18:15:46.6805900,4808\n"},
     "exit": 2},
    {"id": "traces-missing-file", "argv": ["splitbench-traces", "describe", "{tmp}/nope.csv"],
     "expect": "nope.csv: no such file", "files": {}, "exit": 2},
    {"id": "traces-unknown-name", "argv": ["splitbench-traces", "describe", "azure-nope"],
     "expect": "unknown trace name 'azure-nope'", "files": {}, "exit": 2},
    {"id": "traces-negative-arrival", "argv": ["splitbench-traces", "describe", "{tmp}/n.csv"],
     "expect": "n.csv: data row 1, column 'arrival_s': negative arrival time",
     "files": {"n.csv": _HEADER + "0,-1.0,10,5\n"}, "exit": 2},
    {"id": "traces-convert-bad-extension",
     "argv": ["splitbench-traces", "convert", "azure-conv-2023", "{tmp}/out.txt"],
     "expect": "unsupported output extension", "files": {}, "exit": 2},
    {"id": "traces-mooncake-format-on-a-csv",
     "argv": ["splitbench-traces", "describe", "{tmp}/t.csv", "--format", "mooncake"],
     "expect": "t.csv: not Mooncake JSONL (one JSON object per line): its first line looks like "
               "a CSV header",
     "files": {"t.csv": _HEADER + "0,0.0,10,5\n"}, "exit": 2},
]  # fmt: skip
