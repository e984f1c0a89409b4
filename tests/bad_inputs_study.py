"""Bad inputs of splitbench-study (and of the run-folder check every app shares); collected by
tests/test_bad_inputs.py."""

TINY = ["experiment=tiny", "study.designs=[baseline-h100]", "study.heatmap=false"]
POINT = [
    "search=quick",
    "search.duration_s=5",
    "point.design=baseline-h100",
    "point.trace=azure-conv-2023",
    "point.rate=1",
]

CASES = [
    {
        "id": "study-seed-negative",
        "argv": ["splitbench-study", *TINY, "search.seed=-1"],
        "expect": "search.seed: must be >= 0, got -1",
    },
    {
        "id": "study-every-point-failed",
        "argv": ["splitbench-study", *TINY, "study.report=false", "search.duration_s=0.001"],
        "expect": "study tiny: all 6 points failed; first: TraceError: trace.resample_duration_s: must be > 0",
    },
    {
        "id": "study-run-dir-not-a-folder",
        "files": {"afile": "a file, not a folder\n"},
        "argv": ["splitbench-study", *TINY, "hydra.run.dir={tmp}/afile/run"],
        "expect": "hydra.run.dir: '{tmp}/afile' is not a folder",
    },
    {
        "id": "replay-run-dir-not-a-folder",
        "files": {"afile": "x\n"},
        "argv": ["splitbench-replay", "hydra.run.dir={tmp}/afile/run"],
        "expect": "hydra.run.dir: ",
    },
    {
        "id": "study-run-dir-unwritable",
        "argv": ["splitbench-study", *TINY, "hydra.run.dir=/proc/splitbench/run"],
        "expect": "hydra.run.dir: cannot write in '/proc'",
    },
    {
        "id": "study-unknown-experiment",
        "argv": ["splitbench-study", "experiment=nope"],
        "expect": "experiment: unknown option 'nope'",
    },
    {
        "id": "study-unknown-design-key",
        "argv": ["splitbench-study", "study.designs=[baseline-a100,nope]"],
        "expect": "study.designs[1]: unknown value 'nope'",
    },
    {
        "id": "study-unknown-backend",
        "argv": ["splitbench-study", "search.backend=dask"],
        "expect": "search.backend: unknown value 'dask'",
    },
    {
        "id": "study-n-jobs-zero",
        "argv": ["splitbench-study", "search.n_jobs=0"],
        "expect": "search.n_jobs: must be >= 1, got 0",
    },
    {
        "id": "study-profiles-missing-file",
        "argv": ["splitbench-study", *TINY, "profiles.source={tmp}/no-such.csv"],
        "expect": "profiles.source",
    },
    {
        "id": "study-point-count-zero",
        "argv": ["splitbench-study", *POINT, "point.machines=0"],
        "expect": "point.machines: must be >= 1, got 0",
    },
    {
        "id": "study-point-unknown-design",
        "argv": ["splitbench-study", *POINT, "point.design=nope", "point.machines=1"],
        "expect": "point.design: unknown design 'nope'",
    },
    {
        "id": "study-cache-dir-is-a-file",
        "files": {"afile": "x\n"},
        "argv": ["splitbench-study", *POINT, "point.machines=1", "paths.cache_dir={tmp}/afile"],
        "expect": "afile",
    },
    {
        "id": "study-variant-unknown-key",
        "argv": [
            "splitbench-study",
            "experiment=sensitivity",
            "search=quick",
            "study.variants=[{name: v, set: {scheduler.nope: 1}}]",
        ],
        "expect": "study.variants[0].set.scheduler.nope: unknown key 'nope'",
    },
    {
        "id": "study-variant-bad-value",
        "argv": [
            "splitbench-study",
            "experiment=sensitivity",
            "search=quick",
            "study.variants=[{name: v, set: {profiles.adjust.decode_context: roofline}}]",
        ],
        "expect": "profiles.adjust.decode_context: unknown value 'roofline'",
    },
    {
        "id": "study-variant-twice",
        "argv": [
            "splitbench-study",
            "experiment=sensitivity",
            "search=quick",
            "study.variants=[{name: v, set: {seed: 1}}, {name: v, set: {seed: 2}}]",
        ],
        "expect": "study.variants[1].name: 'v' is used twice",
    },
    {
        "id": "study-load-factor-zero",
        "argv": [
            "splitbench-study",
            "experiment=robustness",
            "search=quick",
            "study.load_factors=[0.0]",
        ],
        "expect": "study.load_factors[0]: must be > 0",
    },
    {
        "id": "replay-adjust-bad-scale",
        "argv": [
            "splitbench-replay",
            "design=baseline-h100",
            "design.machines=1",
            "profiles.adjust.overhead_scale=0",
        ],
        "expect": "profiles.adjust.overhead_scale: must be a finite number > 0",
    },
    {
        "id": "replay-prompt-scale-negative",
        "argv": [
            "splitbench-replay",
            "design=baseline-h100",
            "design.machines=1",
            "trace.prompt_scale=-1",
        ],
        "expect": "trace.prompt_scale: must be > 0",
    },
    {
        # a study of the same name runs (its lock names it): the second is refused, nothing of
        # the first overwritten (the lock's host is not this one: its pid cannot be checked)
        "id": "study-same-name-running",
        "files": {
            "results/study/.tiny.lock": '{"pid": 4242, "host": "other-host", "started": '
            '"2026-01-01T00:00:00Z", "command": "splitbench-study experiment=tiny"}\n'
        },
        "argv": ["splitbench-study", *TINY],
        "expect": "study.name: study 'tiny' is being run by pid 4242 on host other-host since "
        "2026-01-01T00:00:00Z (splitbench-study experiment=tiny; lock {tmp}/results/study/"
        ".tiny.lock)",
    },
]
