"""Bad-input cases of splitbench-validate (collected by tests/test_bad_inputs.py)."""

CASES = [
    {
        "id": "validate-design-unknown",
        "argv": ["splitbench-validate", "designs=[split]"],
        "expect": "designs[0]",
        "files": {},
        "exit": 2,
    },
    {
        "id": "validate-repeats-zero",
        "argv": ["splitbench-validate", "repeats=0"],
        "expect": "repeats",
        "files": {},
        "exit": 2,
    },
    {
        "id": "validate-load-unknown-key",
        "argv": ["splitbench-validate", "loads=[{name: a, rte: 1}]"],
        "expect": "loads[0].rte",
        "files": {},
        "exit": 2,
    },
    {
        "id": "validate-load-rate-negative",
        "argv": ["splitbench-validate", "loads=[{name: a, rate: -1}]"],
        "expect": "loads[0].rate",
        "files": {},
        "exit": 2,
    },
    {
        "id": "validate-proxy-port-range",
        "argv": ["splitbench-validate", "deploy.proxy_port=70000"],
        "expect": "deploy.proxy_port",
        "files": {},
        "exit": 2,
    },
    {
        "id": "validate-calibrate-one-length",
        "argv": ["splitbench-validate", "calibrate.lengths=[64]"],
        "expect": "calibrate.lengths",
        "files": {},
        "exit": 2,
    },
    {
        "id": "validate-profile-source-missing",
        "argv": ["splitbench-validate", "profile.mode=source", "profile.source={tmp}/nope.csv"],
        "expect": "profile.source",
        "files": {},
        "exit": 2,
    },
    {
        "id": "validate-cpus-bad",
        "argv": ["splitbench-validate", "deploy.colocated.cpus=abc"],
        "expect": "deploy.colocated.cpus",
        "files": {},
        "exit": 2,
    },
]
