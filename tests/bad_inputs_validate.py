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
        "expect": "rte: unknown key",
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
    # issue 25: tracebacks before, one line now
    {
        "id": "validate-calibrate-nested-list",
        "argv": ["splitbench-validate", "calibrate.lengths=[[1,2],3]"],
        "expect": "calibrate.lengths[0]",
    },
    {
        "id": "validate-section-as-number",
        "argv": ["splitbench-validate", "deploy.colocated=5"],
        "expect": "deploy.colocated",
    },
    {
        "id": "validate-loadgen-cpus-list",
        "argv": ["splitbench-validate", "loadgen.cpus=[7]"],
        "expect": "loadgen.cpus",
    },
    # issue 25: checked before anything starts
    {
        "id": "validate-load-prompt-scale-negative",
        "argv": ["splitbench-validate", "loads.0.prompt_scale=-1"],
        "expect": "loads[0].prompt_scale: must be > 0",
    },
    {
        "id": "validate-load-defaults-cap-zero",
        "argv": ["splitbench-validate", "load_defaults.max_output_tokens=0"],
        "expect": "load_defaults.max_output_tokens",
    },
    {
        "id": "validate-load-max-context-too-long",
        "argv": ["splitbench-validate", "loads.1.max_context=100000"],
        "expect": "loads[1].max_context",
    },
    {
        "id": "validate-loadgen-override-bad-value",
        "argv": ["splitbench-validate", 'loadgen.overrides=["client.max_outstanding=0"]'],
        "expect": "loadgen.overrides: client.max_outstanding",
    },
    {
        "id": "validate-loadgen-override-unknown-key",
        "argv": ["splitbench-validate", 'loadgen.overrides=["nope=1"]'],
        "expect": "loadgen.overrides: nope",
    },
    {
        "id": "validate-proxy-port-equals-prefill",
        "argv": ["splitbench-validate", "deploy.proxy_port=8110"],
        "expect": "deploy.proxy_port: port 8110 is also deploy.prefill.port",
    },
    {
        "id": "validate-core-that-does-not-exist",
        "argv": ["splitbench-validate", "deploy.decode.cpus=4095"],
        "expect": "deploy.decode.cpus: core(s) 4095 do not exist here",
    },
    {
        "id": "validate-engines-share-a-core",
        "argv": ["splitbench-validate", "deploy.decode.cpus=0"],
        "expect": "deploy.decode.cpus: shares core(s) [0]",
    },
    {
        "id": "validate-model-folder-of-another-shape",
        "argv": ["splitbench-validate", "model.build=false", "model.dir={tmp}/m"],
        "files": {"m/config.json": '{"num_hidden_layers": 9, "hidden_size": 512}'},
        "expect": "model.dir: {tmp}/m/config.json: num_hidden_layers = 9",
    },
    {
        "id": "validate-model-spec-unknown",
        "argv": ["splitbench-validate", "model.name=nope"],
        "expect": "model.name: unknown model 'nope'",
    },
]
