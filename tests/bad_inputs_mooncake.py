"""Bad Mooncake trace files and reuse options for tests/test_bad_inputs.py (issue 10 format).

A file without hash_ids loads fine (tests/test_traces_mooncake.py); these must each give one
error line naming the file, data row and column, and exit 2.
"""

from __future__ import annotations

import json


def _jsonl(*rows: dict) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


_OK = {"timestamp": 0, "input_length": 1000, "output_length": 5, "hash_ids": [0, 1]}


def _case(cid: str, row: dict, expect: str, *, first_ok: bool = True) -> dict:
    rows = (_OK, row) if first_ok else (row,)
    return {
        "id": cid,
        "argv": ["splitbench-traces", "describe", "{tmp}/m.jsonl"],
        "files": {"m.jsonl": _jsonl(*rows)},
        "expect": expect,
        "exit": 2,
    }


_ROW2 = "m.jsonl: data row 2, column "

CASES = [
    _case(
        "mooncake-hash-ids-not-list",
        {**_OK, "timestamp": 10, "hash_ids": "0,1"},
        _ROW2 + "'hash_ids' (block_hashes): expected a list of integers, got str",
    ),
    _case(
        "mooncake-hash-ids-number",
        {**_OK, "timestamp": 10, "hash_ids": 7},
        _ROW2 + "'hash_ids' (block_hashes): expected a list of integers, got int",
    ),
    _case(
        "mooncake-hash-id-not-int",
        {**_OK, "timestamp": 10, "hash_ids": [0, "a"]},
        _ROW2 + "'hash_ids' (block_hashes): expected a list of integers, found str",
    ),
    _case(
        "mooncake-hash-id-float",
        {**_OK, "timestamp": 10, "hash_ids": [0, 1.5]},
        _ROW2 + "'hash_ids' (block_hashes): expected a list of integers, found float",
    ),
    _case(
        "mooncake-hash-ids-missing-in-one-row",
        {"timestamp": 10, "input_length": 10, "output_length": 1},
        _ROW2 + "'hash_ids' (block_hashes): missing value",
    ),
    _case(
        "mooncake-hash-ids-too-many-blocks",
        {**_OK, "timestamp": 10, "input_length": 512, "hash_ids": [0, 1]},
        _ROW2 + "'hash_ids' (block_hashes): 2 blocks of 512 tokens for a 512-token prompt",
    ),
    _case(
        "mooncake-negative-input-length",
        {**_OK, "timestamp": 10, "input_length": -4},
        _ROW2 + "'input_length' (prompt_tokens): must be >= 1",
    ),
    _case(
        "mooncake-negative-output-length",
        {**_OK, "timestamp": 10, "output_length": -1},
        _ROW2 + "'output_length' (output_tokens): must be >= 1",
    ),
    _case(
        "mooncake-fractional-input-length",
        {**_OK, "timestamp": 10, "input_length": 10.5},
        _ROW2 + "'input_length' (prompt_tokens): not an integer",
    ),
    _case(
        "mooncake-negative-timestamp",
        {**_OK, "timestamp": -5},
        "m.jsonl: data row 1, column 'timestamp' (arrival_s): negative arrival time",
        first_ok=False,
    ),
    {
        "id": "mooncake-timestamp-backwards",
        "argv": ["splitbench-traces", "describe", "{tmp}/m.jsonl"],
        "files": {"m.jsonl": _jsonl({**_OK, "timestamp": 10}, _OK)},
        "expect": "m.jsonl: data row 2, column 'timestamp' (arrival_s): arrival 0 s is earlier",
        "exit": 2,
    },
    _case(
        "mooncake-missing-input-length",
        {"timestamp": 10, "output_length": 5, "hash_ids": [0]},
        _ROW2 + "'input_length' (prompt_tokens): missing value",
    ),
    {
        "id": "mooncake-invalid-json-line",
        "argv": ["splitbench-traces", "describe", "{tmp}/m.jsonl"],
        "files": {"m.jsonl": _jsonl(_OK) + '{"timestamp": 10, "input_length": \n'},
        "expect": "m.jsonl: data row 2: invalid JSON",
        "exit": 2,
    },
    {
        "id": "mooncake-cache-blocks-zero",
        "argv": ["splitbench-traces", "describe", "{tmp}/m.jsonl", "--cache-blocks", "0"],
        "files": {"m.jsonl": _jsonl(_OK)},
        "expect": "argument --cache-blocks: must be a positive integer (blocks), got '0'",
        "exit": 2,
    },
    {
        "id": "mooncake-cache-blocks-not-a-number",
        "argv": ["splitbench-traces", "describe", "{tmp}/m.jsonl", "--cache-blocks", "many"],
        "files": {"m.jsonl": _jsonl(_OK)},
        "expect": "argument --cache-blocks: must be a positive integer (blocks), got 'many'",
        "exit": 2,
    },
    {
        "id": "cache-blocks-without-hashes",
        "argv": ["splitbench-traces", "describe", "azure-code-2023", "--cache-blocks", "100"],
        "files": {},
        "expect": "--cache-blocks: azure-code-2023 has no block hashes",
        "exit": 2,
    },
]
