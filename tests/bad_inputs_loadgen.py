"""Bad-input cases of splitbench-loadgen (collected by tests/test_bad_inputs.py; format in
/work/helpers/COMMON.md). Port 9 on 127.0.0.1 (discard) has no server here."""

CASES = [
    {
        "id": "loadgen-context-names-server-key",
        "argv": [
            "splitbench-loadgen",
            "target.base_url=http://127.0.0.1:9",
            "target.max_model_len=2",
            "trace.context_policy=reject",
        ],
        "expect": "target.max_model_len: every request exceeds the server's 2-token context",
        "files": {},
        "exit": 2,
    },
    {
        "id": "loadgen-context-names-trace-key",
        "argv": [
            "splitbench-loadgen",
            "target.base_url=http://127.0.0.1:9",
            "trace.max_context=2",
            "trace.context_policy=reject",
        ],
        "expect": "trace.max_context: every request exceeds the 2-token context",
        "files": {},
        "exit": 2,
    },
    {
        "id": "loadgen-unreachable",
        "argv": [
            "splitbench-loadgen",
            "target.base_url=http://127.0.0.1:9",
            "client.max_requests=2",
        ],
        "expect": "cannot reach",
        "files": {},
        "exit": 2,
    },
    {
        "id": "loadgen-remote-host",
        "argv": ["splitbench-loadgen", "target.base_url=http://example.com:8000"],
        "expect": "target.base_url",
        "files": {},
        "exit": 2,
    },
    {
        "id": "loadgen-bad-scheme",
        "argv": ["splitbench-loadgen", "target.base_url=ftp://x"],
        "expect": "target.base_url",
        "files": {},
        "exit": 2,
    },
    {
        "id": "loadgen-outstanding-zero",
        "argv": ["splitbench-loadgen", "client.max_outstanding=0"],
        "expect": "client.max_outstanding",
        "files": {},
        "exit": 2,
    },
    {
        "id": "loadgen-scale-negative",
        "argv": ["splitbench-loadgen", "lengths.output_scale=-2"],
        "expect": "lengths.output_scale",
        "files": {},
        "exit": 2,
    },
    {
        "id": "loadgen-prompt-mode",
        "argv": ["splitbench-loadgen", "target.prompt_mode=bytes"],
        "expect": "target.prompt_mode",
        "files": {},
        "exit": 2,
    },
    {
        "id": "loadgen-unknown-key",
        "argv": ["splitbench-loadgen", "client.outstanding=3"],
        "expect": "client.outstanding",
        "files": {},
        "exit": 2,
    },
    {
        "id": "loadgen-unknown-target",
        "argv": ["splitbench-loadgen", "target=nope"],
        "expect": "target",
        "files": {},
        "exit": 2,
    },
    {
        "id": "loadgen-trace-missing",
        "argv": [
            "splitbench-loadgen",
            "trace.path={tmp}/no.csv",
            "target.base_url=http://127.0.0.1:9",
        ],
        "expect": "no.csv",
        "files": {},
        "exit": 2,
    },
    {
        "id": "loadgen-trace-bad-row",
        "argv": [
            "splitbench-loadgen",
            "trace.path={tmp}/t.csv",
            "target.base_url=http://127.0.0.1:9",
        ],
        "expect": "t.csv",
        "files": {"t.csv": "request_id,arrival_s,prompt_tokens,output_tokens\n0,0.0,-5,3\n"},
        "exit": 2,
    },
]
