"""The Hydra config tree: every option of every group and every experiment composes and
validates; bad values are one-line errors naming the key; launchers switch by one override."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from experiments.config.checks import replay_config, study_config
from experiments.config.compose import precheck
from experiments.config.schemas import CONF_DIR, register
from experiments.errors import ExperimentError

CONF = Path(CONF_DIR)
register()


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.fixture()
def hydra_ctx():
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        yield


def _resolve(cfg):
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)


REPLAY_GROUPS = ["model", "gpu", "design", "trace", "scheduler", "slo", "profiles", "paths"]


def test_groups_exist():
    for g in [*REPLAY_GROUPS, "search", "experiment", "hydra/launcher", "hydra/callbacks"]:
        assert options(g), g
    assert {"azure-code-2023", "azure-conv-2023", "path"} <= set(options("trace"))
    assert {
        "baseline-a100",
        "baseline-h100",
        "splitwise-aa",
        "splitwise-hh",
        "splitwise-ha",
        "splitwise-hhcap",
        "splitwise-h200",
    } <= set(options("design"))


@pytest.mark.parametrize("group", REPLAY_GROUPS, ids=[f"grp_{g}" for g in REPLAY_GROUPS])
def test_every_option_composes_in_replay(hydra_ctx, group, tmp_path):
    for opt in options(group):
        ov = [f"{group}={opt}"]
        if group == "trace" and opt == "path":
            f = tmp_path / "t.csv"
            f.write_text("request_id,arrival_s,prompt_tokens,output_tokens\n0,0.0,10,5\n")
            ov.append(f"trace.path={f}")
        if group == "profiles" and opt == "measured":
            cfg = compose("replay", overrides=ov)
            # profiles=measured: the folder splitbench-characterize writes its runs into
            assert _resolve(cfg)["profiles"]["source"].endswith("/results/profiles")
            continue
        cfg = compose("replay", overrides=ov)
        plain = replay_config(cfg)  # resolves and validates every section
        assert plain["model"].name and plain["design"].kind in ("baseline", "splitwise")


def test_design_facts_are_spec_names(hydra_ctx):
    from characterize.modeling.specs import list_specs

    machines = set(list_specs("machines"))
    for opt in options("design"):
        d = _resolve(compose("replay", overrides=[f"design={opt}"]))["design"]
        for k in ("machine", "prompt_machine", "token_machine"):
            assert d[k] is None or d[k] in machines, (opt, k)
    for opt in options("gpu"):
        g = _resolve(compose("replay", overrides=[f"gpu={opt}", "design=baseline"]))
        assert g["gpu"]["machine"] in machines and g["design"]["machine"] == g["gpu"]["machine"]


@pytest.mark.parametrize("experiment", options("experiment"))
def test_every_experiment_composes_and_validates(hydra_ctx, experiment):
    cfg = compose("study", overrides=[f"experiment={experiment}"])
    c = study_config(cfg)
    assert c["study"].designs and c["study"].traces and c["study"].budgets
    # the per-model studies carry the model in their name (one folder per model)
    per_model = experiment in ("robustness", "scheduler", "sensitivity", "seeds")
    assert c["study"].name == (f"{experiment}-{c['model'].name}" if per_model else experiment)


@pytest.mark.parametrize("search", options("search"))
def test_every_search_option(hydra_ctx, search):
    c = study_config(compose("study", overrides=[f"search={search}"]))
    assert c["search"].mode in ("bisect", "grid")


def test_report_config(hydra_ctx):
    cfg = compose("report", overrides=["inputs=[a,b]"])
    assert list(cfg.inputs) == ["a", "b"]
    assert _resolve(cfg)["output_dir"].endswith("results/report")


@pytest.mark.parametrize(
    "launcher", ["basic", "joblib", "submitit_local", "submitit_slurm", "slurm", "slurm-gpu", "ray"]
)
def test_launchers_switch_with_one_override(hydra_ctx, launcher):
    if launcher == "ray":
        pytest.importorskip("hydra_plugins.hydra_ray_launcher", reason="hydra-ray-launcher")
    cfg = compose("study", overrides=[f"hydra/launcher={launcher}"], return_hydra_config=True)
    target = cfg.hydra.launcher._target_
    expect = {
        "basic": "BasicLauncher",
        "joblib": "JoblibLauncher",
        "submitit_local": "LocalLauncher",
        "submitit_slurm": "SlurmLauncher",
        "slurm": "SlurmLauncher",
        "slurm-gpu": "SlurmLauncher",
        "ray": "RayLauncher",
    }[launcher]
    assert target.endswith(expect)
    if launcher == "slurm":  # the study's own pool size, and a realistic time limit
        assert cfg.hydra.launcher.cpus_per_task == cfg.search.n_jobs == 2
        assert cfg.hydra.launcher.timeout_min == 240 and not cfg.hydra.launcher.gpus_per_node
    if launcher == "slurm-gpu":
        assert cfg.hydra.launcher.gpus_per_node == 1 and cfg.hydra.launcher.timeout_min == 480


def test_paths_follow_the_original_working_dir(hydra_ctx, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SPLITBENCH_ROOT", raising=False)
    p = _resolve(compose("study"))["paths"]
    assert p["root"] == str(tmp_path)
    assert p["cache_dir"] == str(tmp_path / "results" / "cache")
    monkeypatch.setenv("SPLITBENCH_ROOT", "/data/sb")
    assert _resolve(compose("study"))["paths"]["report_dir"] == "/data/sb/results/report"


def _register_characterize() -> None:
    import experiments.config.characterize as sc

    for fn in ("register", "register_configs"):
        if hasattr(sc, fn):
            getattr(sc, fn)()


def _direct_groups(app: str) -> list[str]:
    """The groups a primary config takes at their own package (``group: option`` entries)."""
    import yaml

    doc = yaml.safe_load((CONF / f"{app}.yaml").read_text())
    out = []
    for entry in doc.get("defaults") or []:
        if isinstance(entry, dict):
            for k in entry:
                k = k.replace("override ", "").strip()
                if "@" not in k and not k.startswith("hydra") and (CONF / k).is_dir():
                    out.append(k)
    return out


def _own_values(group: str, opt: str) -> dict:
    """The values an option's YAML sets (interpolations as written), less its defaults list."""
    import yaml

    doc = yaml.safe_load((CONF / group / f"{opt}.yaml").read_text()) or {}
    return {k: v for k, v in doc.items() if k != "defaults"}


APP_GROUPS = [
    (app, group, opt)
    for app in ("replay", "study", "report", "characterize")
    for group in _direct_groups(app)
    if group != "experiment"
    for opt in options(group)
    if opt != "schema"
]


@pytest.mark.parametrize(("app", "group", "opt"), APP_GROUPS, ids=["/".join(x) for x in APP_GROUPS])
def test_every_config_of_every_group_composes_to_its_values(hydra_ctx, app, group, opt):
    """Each option of each group the app takes composes, and the composed group holds the
    values that option's file sets (so an option that silently composed to another's, or to the
    schema's defaults, fails)."""
    if app == "characterize":
        _register_characterize()
    cfg = compose(app, overrides=[f"{group}={opt}"])
    node = cfg[group]
    own = _own_values(group, opt)
    assert own, f"{group}/{opt}.yaml sets nothing"
    plain = OmegaConf.to_container(node, resolve=False)
    for k, v in own.items():
        if v == "???":  # to be set on the command line
            assert OmegaConf.is_missing(node, k) or plain[k] is None, (app, group, opt, k)
            continue
        _assert_sets(plain[k], v, (app, group, opt, k))


def _assert_sets(composed, own, where):
    """``composed`` holds what ``own`` sets: equal values; for a nested group (e.g.
    scheduler.kv_transfer), every key the file sets, the others keeping their defaults."""
    if isinstance(own, dict) and isinstance(composed, dict):
        for k, v in own.items():
            _assert_sets(composed[k], v, (*where, k))
    else:
        assert composed == own, (*where, composed, own)


def test_characterize_primary_config_composes(hydra_ctx):
    """The characterization app's config: its documented defaults, and the shard follows the
    model's TP unless a shard option names one."""
    _register_characterize()
    cfg = compose("characterize")
    assert cfg.device == "cuda" and cfg.impl == "native" and cfg.sweep.name == "paper"
    assert cfg.power.mode == "auto" and cfg.model.name == "llama2-70b"
    assert cfg.shard.tp == cfg.model.tp == 8
    assert compose("characterize", overrides=["shard=tp2"]).shard.tp == 2
    assert compose("characterize", overrides=["power=off"]).power.mode == "off"


BAD = [
    (["design=nope"], "design: unknown option 'nope'"),
    (["design.prompt_machines=-3"], "design.prompt_machines: must be >= 1, got -3"),
    (["design.prompt_machiens=3"], "design.prompt_machiens: unknown key"),
    (["design.prompt_machines=abc"], "design.prompt_machines:"),
    (["trace.name=no-such-trace"], "trace.name: unknown value 'no-such-trace'"),
    (["trace=nope"], "trace: unknown option 'nope'"),
    (["trace.path=/no/such/file.csv"], "trace.path: no such file"),
    (["scheduler.policy=lifo"], "scheduler.policy: unknown value 'lifo'"),
    (["design=baseline-a100", "design.machines=0"], "design.machines: must be >= 1"),
    (["design.machine=dgx-a100"], "design.machine"),
    (["model.name=gpt5"], "model.name: unknown value 'gpt5'"),
    (["slo.ttft=[2,3]"], "slo.ttft: needs 3 limits"),
    (["trace.resample_rate=-1"], "trace.resample_rate: must be > 0"),
]


@pytest.mark.parametrize(("overrides", "message"), BAD)
def test_bad_values_are_one_line_errors_naming_the_key(overrides, message):
    with pytest.raises(ExperimentError) as e:
        precheck("replay", overrides, replay_config)
    text = str(e.value)
    assert "\n" not in text
    assert text.startswith(message), text


STUDY_BAD = [
    (["study.designs=[baseline-a100,nope]"], "study.designs[1]: unknown value 'nope'"),
    (["search.rate_step=0"], "search.rate_step: must be > 0"),
    (["search.prompt_max=0"], "search.prompt_max: must be >= prompt_min"),
    (["search.mode=exhaustive"], "search.mode: unknown value"),
    (["experiment=nope"], "experiment: unknown option 'nope'"),
    (["study.traces=[azure-conv-2023,x]"], "study.traces[1]: unknown value 'x'"),
]


@pytest.mark.parametrize(("overrides", "message"), STUDY_BAD)
def test_bad_study_values(overrides, message):
    with pytest.raises(ExperimentError) as e:
        precheck("study", overrides, study_config)
    assert "\n" not in str(e.value) and str(e.value).startswith(message), str(e.value)


def test_cli_error_is_one_line_exit_2(tmp_path):
    env = {**os.environ, "SPLITBENCH_ROOT": str(tmp_path)}
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.apps.replay",
            "design=splitwise-hh",
            "design.token_machines=-1",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert p.returncode == 2
    assert p.stderr.strip() == "error: design.token_machines: must be >= 1, got -1"
    assert "Traceback" not in p.stderr
    assert not (tmp_path / "results").exists()  # nothing ran
