"""splitbench-validate: the simulator against a real vLLM deployment (issue 12).

    splitbench-validate [designs=[baseline,splitwise]] [repeats=3] [hydra.run.dir=DIR]

Per design (``baseline``: one co-located vLLM; ``splitwise``: a prefill and a decode vLLM joined
by a KV connector, behind the proxy), every step a folder of the run dir, reused on rerun when
its config and inputs did not change (:mod:`experiments.validation.steps`):

1. ``model``: the tiny random-weight Llama folder;
2. ``trace-<load>``: the scaled trace of each load level (read by both sim and load generator);
3. ``profile-<design>``: the instances' phases, ``splitbench-characterize engine=vllm``
   (``profile.mode=source``: an existing profile; ``skip``: no profile, no simulation);
4. ``fit-<design>``: ``splitbench-profiles fit`` on it (held-out error);
5. ``simulate-<design>-<load>``: ``splitbench-replay`` on the trace with the profile;
6. ``deploy-<design>``: the servers (started only when a later step needs them; never cached);
7. ``calibrate-<design>``: the KV-transfer calibration (splitwise);
8. ``replay-<design>-<load>-r<k>``: ``splitbench-loadgen`` against the deployment;
9. ``compare-<design>-<load>``: error table and CDF overlays (sim dashed, real solid);
10. ``report``: ``errors.csv`` and ``report.md`` over every design and load.

A failure is one line naming the step (``error: step replay-baseline-conv-r1-r0: colocated
(pid 123, port 8100) exited with code -9 mid-run; last log line: ...``), exit 2; every finished
step keeps its output and every server started is stopped (process groups).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from experiments.apps._cli import launch
from experiments.errors import ExperimentError

DESIGN_KINDS = ("baseline", "splitwise")
PROFILE_MODES = ("measure", "source", "skip")


# ---------------------------------------------------------------- config checks (one line each)
def _need(cond: bool, key: str, msg: str) -> None:
    if not cond:
        raise ExperimentError(f"{key}: {msg}")


def _int(v, key: str, lo: int | None = None) -> int:
    _need(isinstance(v, int) and not isinstance(v, bool), key, f"must be an integer, got {v!r}")
    if lo is not None:
        _need(v >= lo, key, f"must be >= {lo}, got {v}")
    return int(v)


def _num(v, key: str, gt: float | None = None) -> float:
    ok = isinstance(v, int | float) and not isinstance(v, bool)
    _need(ok, key, f"must be a number, got {v!r}")
    if gt is not None:
        _need(v > gt, key, f"must be > {gt:g}, got {v}")
    return float(v)


def plain(cfg: DictConfig) -> dict:
    from experiments.validate import to_plain

    return to_plain(cfg)


def check_config(cfg: DictConfig) -> dict:
    """The plain, checked config; ExperimentError naming the first bad key."""
    from experiments.validation.procs import parse_cpus

    c = plain(cfg)
    designs = c.get("designs")
    _need(isinstance(designs, list) and len(designs) > 0, "designs", "must be a non-empty list")
    for i, d in enumerate(designs):
        _need(d in DESIGN_KINDS, f"designs[{i}]", f"unknown design '{d}' (known: baseline, "
              "splitwise)")  # fmt: skip
    _int(c.get("repeats"), "repeats", 1)
    _int(c.get("seed"), "seed", 0)
    loads = c.get("loads")
    _need(isinstance(loads, list) and len(loads) > 0, "loads", "must be a non-empty list")
    names = set()
    for i, ld in enumerate(loads):
        k = f"loads[{i}]"
        _need(isinstance(ld, dict), k, "must be a mapping")
        n = ld.get("name")
        _need(isinstance(n, str) and n.replace("-", "").replace(".", "").replace("_", "")
              .isalnum(), f"{k}.name", f"must be a short name (letters, digits, -_.), got {n!r}")  # fmt: skip
        _need(n not in names, f"{k}.name", f"duplicate load name '{n}'")
        names.add(n)
        _num(ld.get("rate", 0.5), f"{k}.rate", gt=0)
        _num(ld.get("duration_s", 60.0), f"{k}.duration_s", gt=0)
        from experiments.validation.workload import Load

        known = set(Load.__dataclass_fields__)
        for key in ld:
            _need(key in known, f"{k}.{key}", "unknown key")
    d = c["deploy"]
    _need(d.get("device") in ("cpu", "cuda"), "deploy.device", "must be cpu or cuda")
    ports = {}
    for inst in ("colocated", "prefill", "decode"):
        p = _int(d[inst].get("port"), f"deploy.{inst}.port", 1)
        _need(p <= 65535, f"deploy.{inst}.port", f"must be <= 65535, got {p}")
        ports[inst] = p
        try:
            _need(bool(parse_cpus(d[inst].get("cpus"))), f"deploy.{inst}.cpus", "must name cores")
        except ValueError:
            raise ExperimentError(
                f"deploy.{inst}.cpus: bad core list {d[inst].get('cpus')!r}"
            ) from None
        _num(d[inst].get("kvcache_gib", 1), f"deploy.{inst}.kvcache_gib", gt=0)
        _int(d[inst].get("max_num_seqs", 32), f"deploy.{inst}.max_num_seqs", 1)
    pp = _int(d.get("proxy_port"), "deploy.proxy_port", 1)
    _need(pp <= 65535, "deploy.proxy_port", f"must be <= 65535, got {pp}")
    _need(len({ports["prefill"], ports["decode"], pp}) == 3, "deploy.proxy_port",
          "prefill, decode and proxy need three different ports")  # fmt: skip
    _int(d.get("max_model_len"), "deploy.max_model_len", 2)
    _num(d.get("health_timeout_s"), "deploy.health_timeout_s", gt=0)
    cal = c["calibrate"]
    lens = cal.get("lengths")
    _need(isinstance(lens, list) and len(set(lens)) >= 2, "calibrate.lengths",
          "needs at least two distinct prompt lengths")  # fmt: skip
    for i, L in enumerate(lens):
        _int(L, f"calibrate.lengths[{i}]", 2)
        _need(L < d["max_model_len"] - 2, f"calibrate.lengths[{i}]",
              f"must be below deploy.max_model_len - 2 ({d['max_model_len'] - 2})")  # fmt: skip
    _int(cal.get("repeats"), "calibrate.repeats", 1)
    prof = c["profile"]
    _need(prof.get("mode") in PROFILE_MODES, "profile.mode", "must be measure, source or skip")
    if prof["mode"] == "source":
        src = prof.get("source")
        _need(bool(src), "profile.source", "must be set when profile.mode=source")
        _need(src == "reference" or Path(src).exists(), "profile.source", f"{src}: not found")
    _num(c["loadgen"].get("timeout_s"), "loadgen.timeout_s", gt=0)
    return c


def _validate(cfg: DictConfig) -> None:
    check_config(cfg)


# ---------------------------------------------------------------- the pipeline
def _script(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def _run_tool(step: str, argv: list[str], log: Path, timeout_s: float, cpus=None) -> None:
    """Run a console script (one of ours) with its output in ``log``; StepError on failure."""
    from experiments.validation.errors import StepError
    from experiments.validation.procs import _last_line

    if not Path(argv[0]).exists() and shutil.which(argv[0]) is None:
        raise StepError(step, f"{Path(argv[0]).name} is not installed in this environment")
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HYDRA_FULL_ERROR": "0"}
    with open(log, "wb") as f:
        p = subprocess.Popen(  # noqa: S603 - our own console scripts
            argv, stdout=f, stderr=subprocess.STDOUT, env=env,
            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,  # noqa: PLW1509
        )  # fmt: skip
        try:
            rc = p.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            p.terminate()
            p.wait(timeout=30)
            raise StepError(
                step, f"{Path(argv[0]).name} ran past {timeout_s:g} s (log: {log})"
            ) from None
        except BaseException:
            p.terminate()
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
            raise
    if rc != 0:
        raise StepError(step, f"{Path(argv[0]).name} exited {rc}: {_last_line(log)} (log: {log})")


class LazyDeployment:
    """The deployment of one design, started on the first step that needs it."""

    def __init__(self, design: str, c: dict, run_dir: Path, sup, model_dir: str):
        from experiments.validation.deploy import (
            ConnectorConfig,
            DeploymentConfig,
            InstanceConfig,
        )

        d = c["deploy"]

        def inst(k):
            x = d[k]
            return InstanceConfig(
                port=int(x["port"]), cpus=str(x["cpus"]), kvcache_gib=float(x["kvcache_gib"]),
                max_num_seqs=int(x["max_num_seqs"]),
                max_num_batched_tokens=x.get("max_num_batched_tokens"),
                extra_args=tuple(x.get("extra_args") or ()),
            )  # fmt: skip

        con = d["connector"]
        self.cfg = DeploymentConfig(
            design=design,
            model_dir=model_dir,
            colocated=inst("colocated"),
            prefill=inst("prefill"),
            decode=inst("decode"),
            proxy_port=int(d["proxy_port"]),
            proxy_cpus=d.get("proxy_cpus"),
            connector=ConnectorConfig(
                name=con["name"],
                role=con["role"],
                storage_dir=con.get("storage_dir"),
                buffer_device=con.get("buffer_device"),
                extra=dict(con.get("extra") or {}),
            ),  # fmt: skip
            max_model_len=int(d["max_model_len"]),
            dtype=str(d["dtype"]),
            device=str(d["device"]),
            health_timeout_s=float(d["health_timeout_s"]),
            prefix_caching=bool(d["prefix_caching"]),
            python=d.get("python"),
        )
        self.step = f"deploy-{design}"
        self.dir = run_dir / self.step
        self.sup = sup
        self.dep = None

    def ensure(self):
        from common.atomic import write_json_atomic
        from experiments.validation.deploy import Deployment

        if self.dep is None:
            self.dir.mkdir(parents=True, exist_ok=True)
            self.dep = Deployment(self.cfg, self.dir, self.sup)
            print(f"[{self.step}] starting {self.cfg.design} deployment", flush=True)
            info = self.dep.start(self.step)
            write_json_atomic(self.dir / "deploy.json", info)
            ups = ", ".join(f"{n} {s['startup_s']:.0f} s" for n, s in info["servers"].items())
            print(f"[{self.step}] up at {self.dep.url} ({ups})", flush=True)
        self.sup.check(self.step)
        return self.dep

    def stop(self):
        if self.dep is not None:
            for s in reversed(list(self.dep.servers.values())):
                s.stop()
                if s in self.sup.servers:
                    self.sup.servers.remove(s)
            self.dep = None


def _model_step(c: dict, steps) -> str:
    from experiments.validation.errors import StepError
    from experiments.validation.model_dir import TinyLlama, build_model_dir

    m = c["model"]
    spec = TinyLlama(seed=int(m["seed"]), dtype=str(c["deploy"]["dtype"]))

    def fn(d: Path):
        if not m["build"]:
            if not Path(m["dir"], "config.json").is_file():
                raise StepError("model", f"model.dir: no config.json in {m['dir']}")
        else:
            build_model_dir(m["dir"], spec)
        return {"dir": str(m["dir"]), "kv_bytes_per_token": spec.kv_bytes_per_token}

    steps.run("model", {"dir": str(m["dir"]), "spec": spec.__dict__, "build": m["build"]}, fn)
    return str(m["dir"])


def _loads(c: dict):
    from experiments.validation.workload import Load

    base = {**c.get("load_defaults", {}), "max_context": int(c["deploy"]["max_model_len"])}
    return [Load(**{**base, "seed": int(c["seed"]), **ld}) for ld in c["loads"]]


def sim_overrides(c: dict, design: str, source: str) -> list[str]:
    """splitbench-replay overrides that make the simulator the deployment of ``design``: the
    model spec, the machine spec (one instance per node), the node counts (baseline: 1; split:
    1 prompt + 1 token, no mixed pool, as the proxy never mixes), the machine policy of the design
    (``vllm`` takes baseline designs only) with the deployment's vLLM settings, the profile as its own slowdown reference; then the config's."""
    d = c["deploy"]
    sim = c["simulate"]
    inst = d["colocated" if design == "baseline" else "decode"]
    mbt = inst.get("max_num_batched_tokens") or sim["default_max_num_batched_tokens"]
    ov = [
        f"model={c['model']['name']}",
        f"gpu={sim['gpu']}",
        f"profiles.slo_reference_source={source}",
        f"profiles.slo_reference_gpu={sim['profile_gpu']}",
        "profiles.slo_reference_tp=1",
    ]
    policy = sim["machine_policy"][design]
    ov.append(f"design.machine_policy={policy}")
    if policy == "vllm":
        ov += [f"scheduler.vllm.max_num_seqs={int(inst['max_num_seqs'])}",
               f"scheduler.vllm.max_num_batched_tokens={int(mbt)}",
               f"scheduler.vllm.block_size={int(c['calibrate']['block_size'])}"]  # fmt: skip
    else:  # the reference policy: vLLM's budget as its prompt batch, max_num_seqs as its batch
        ov += [f"scheduler.prompt_batch_tokens={int(mbt)}",
               f"scheduler.max_batch_size={int(inst['max_num_seqs'])}"]  # fmt: skip
    if design == "baseline":
        ov += ["design=baseline", "design.machines=1"]
    else:
        ov += ["design=splitwise", "design.prompt_machines=1", "design.token_machines=1",
               "design.mixed_pool=false"]  # fmt: skip
    return [*ov, *sim["overrides"], *sim["designs"].get(design, [])]


def decode_step_s(source: str | None) -> float:
    """The profile's fastest batch-1 decode iteration (s); 0 when there is none."""
    import pandas as pd

    if not source or source == "reference":
        return 0.0
    p = Path(source)
    files = sorted(p.rglob("profiles.csv")) if p.is_dir() else [p]
    best = 0.0
    for f in files:
        df = pd.read_csv(f)
        one = df[(df["phase"] == "decode") & (df["batch_size"] == 1)]["latency_s"]
        if len(one) and (best == 0.0 or float(one.min()) < best):
            best = float(one.min())
    return best


def handover_overrides(cal: dict, step_s: float = 0.0, block_size: int | None = None) -> list[str]:
    """The calibrated hand-over as the simulator's KV transfer (``handover_s`` + ``per_token_s``
    x tokens), less one decode step (the measured hand-over includes the decode instance's first
    iteration, which the simulator adds itself).

    With the split fit (``a + b_injected x injected + b_recomputed x recomputed``) and the block
    size: the connector injects whole blocks and the decode instance recomputes the rest, on
    average ``(block_size + 1) / 2`` tokens, so ``handover_s = a + (b_recomputed - b_injected) x
    (block_size + 1) / 2`` and ``per_token_s = b_injected``. Otherwise the line ``a + b x L``."""
    cal = cal or {}
    sp = cal.get("handover_split_fit") or {}
    keys = ("a", "b_injected_s_per_token", "b_recomputed_s_per_token")
    if block_size and all(isinstance(sp.get(k), int | float) and np.isfinite(sp[k]) for k in keys):
        a0, bi, br = (float(sp[k]) for k in keys)
        a, b = a0 + (br - bi) * (block_size + 1) / 2, bi
    else:
        h = cal.get("handover_fit") or {}
        a, b = h.get("a"), h.get("b")
        if a is None or b is None or not (np.isfinite(a) and np.isfinite(b)):
            return []
    step = float(step_s or 0.0)
    return [f"scheduler.kv_transfer.handover_s={max(0.0, float(a) - step):.6g}",
            f"scheduler.kv_transfer.per_token_s={max(0.0, float(b)):.6g}"]  # fmt: skip


def run(cfg: DictConfig, run_dir: str | Path | None = None) -> dict:
    from dataclasses import asdict

    from experiments.validation.procs import Supervisor
    from experiments.validation.steps import Steps
    from experiments.validation.workload import build_trace

    c = check_config(cfg)
    if run_dir is None:
        from hydra.core.hydra_config import HydraConfig

        run_dir = HydraConfig.get().runtime.output_dir if HydraConfig.initialized() else "."
    run_dir = Path(run_dir).resolve()
    steps = Steps(run_dir, log=lambda s: print(s, flush=True))
    with Supervisor() as sup:
        model_dir = _model_step(c, steps)
        loads = _loads(c)
        for ld in loads:
            steps.run(f"trace-{ld.name}", asdict(ld), lambda d, ld=ld: build_trace(ld, d))
        for design in c["designs"]:
            dep = LazyDeployment(design, c, run_dir, sup, model_dir)
            try:
                _design(c, design, loads, steps, dep, sup)
            finally:
                dep.stop()
        rows = _report(c, loads, steps, run_dir)
    print(f"validation run dir: {run_dir} ({len(steps.ran)} steps ran, {len(steps.reused)} "
          "reused)")  # fmt: skip
    return {"run_dir": str(run_dir), "ran": steps.ran, "reused": steps.reused, "rows": rows}


def _profile(c: dict, design: str, steps, model_dir: str) -> tuple[str | None, str]:
    """(the profile source of a design's instances (None: profile.mode=skip), its step)."""
    prof = c["profile"]
    name = f"profile-{design}"
    if prof["mode"] == "skip":
        return None, name
    if prof["mode"] == "source":
        src = str(prof["source"])
        steps.run(name, {"source": src}, lambda d: {"source": src})
        return src, name
    # measure: each instance runs the model with the same settings on its own core(s); the
    # profile of the first instance stands for both (same model, same core count by default).
    # One profile serves both designs when the co-located and prefill instances have the same
    # settings (the port aside): step "profile"
    inst = c["deploy"]["colocated" if design == "baseline" else "prefill"]

    def settings(k):
        return {x: v for x, v in c["deploy"][k].items() if x != "port"}

    if settings("colocated") == settings("prefill"):
        name = "profile"
    conf = {"model_dir": model_dir, "overrides": list(prof["overrides"]),
            "instance": settings("colocated" if design == "baseline" else "prefill"),
            "device": c["deploy"]["device"], "dtype": c["deploy"]["dtype"]}  # fmt: skip

    from experiments.validation.procs import parse_cpus

    cpus = parse_cpus(inst["cpus"])

    def fn(d: Path):
        argv = [
            _script("splitbench-characterize"),
            "engine=vllm",
            f"model={c['model']['name']}",
            f"device={c['deploy']['device']}",
            f"vllm.model_dir={model_dir}",
            f"vllm.max_num_seqs={inst['max_num_seqs']}",
            "vllm.max_num_batched_tokens="
            f"{inst.get('max_num_batched_tokens') or c['simulate']['default_max_num_batched_tokens']}",
            f"vllm.kvcache_gib={max(1, round(float(inst['kvcache_gib'])))}",
            f"out_dir={d}",
            "run_name=profile",
            f"hydra.run.dir={d / 'hydra'}",
            *([f"vllm.omp_bind={','.join(map(str, sorted(cpus)))}"]
              if c["deploy"]["device"] == "cpu" else []),
            *prof["overrides"],
        ]  # fmt: skip
        _run_tool(name, argv, d / "characterize.log", 3600, cpus=cpus)
        return {"source": str(d / "profile" / "profiles.csv")}

    res = steps.run(name, conf, fn, inputs=["model"])
    return str(res.get("source") or steps.path(name)), name


def _design(c: dict, design: str, loads, steps, dep: LazyDeployment, sup) -> None:
    from experiments.validation.calibrate import calibrate_kv_transfer
    from experiments.validation.compare import compare_runs, load_run, plot_cdfs
    from experiments.validation.errors import StepError

    source, prof_step = _profile(c, design, steps, dep.cfg.model_dir)
    cal = c["calibrate"]
    kv_ov: list[str] = []
    if design == "splitwise" and cal["enabled"]:
        # before the simulation: the calibrated hand-over is the simulator's KV transfer model
        # (measured on calibration requests, never on the replays compared)
        name = f"calibrate-{design}"

        def cal_fn(d: Path):
            dp = dep.ensure()
            sup.watch()
            try:
                return calibrate_kv_transfer(
                    dp.instances["prefill"], dp.url, d, model=str(dep.cfg.model_dir),
                    lengths=[int(x) for x in cal["lengths"]], repeats=int(cal["repeats"]),
                    seed=int(c["seed"]), kv_bytes_per_token=int(cal["kv_bytes_per_token"]),
                    block_size=int(cal["block_size"]), storage_bytes=dp.kv_storage_bytes,
                    injected=dp.injected_tokens,
                )  # fmt: skip
            except (KeyboardInterrupt, StepError):
                sup.check(name, grace_s=3.0)  # a server that died explains the failure
                raise
            finally:
                sup.unwatch()
                dp.clear_kv_storage()

        res = steps.run(name, {"deploy": dep.cfg.__repr__(), **cal}, cal_fn, inputs=["model"])
        kv_ov = handover_overrides(res, decode_step_s(source), int(cal["block_size"]))
    sim_dirs: dict[str, Path] = {}
    if source is not None:
        fit = f"fit-{design}"

        def fit_fn(d: Path):
            argv = [_script("splitbench-profiles"), "fit", "--source", source]
            _run_tool(fit, argv, d / "fit.log", 600)
            return {"source": source, "log": str(d / "fit.log")}

        steps.run(fit, {"source": source}, fit_fn, inputs=[prof_step])
        if c["simulate"]["enabled"]:
            ov = [*sim_overrides(c, design, source), *kv_ov]
            for ld in loads:
                name = f"simulate-{design}-{ld.name}"

                def sim_fn(d: Path, ld=ld, ov=ov, name=name):
                    trace = steps.path(f"trace-{ld.name}") / "trace.csv"
                    argv = [_script("splitbench-replay"), "trace=path", f"trace.path={trace}",
                            f"profiles.source={source}", f"seed={c['seed']}",
                            f"hydra.run.dir={d}", *ov]  # fmt: skip
                    _run_tool(name, argv, d / "replay.log", 1800)
                    return {"dir": str(d)}

                steps.run(name, {"overrides": ov, "source": source}, sim_fn,
                          inputs=[fit, f"trace-{ld.name}"])  # fmt: skip
                sim_dirs[ld.name] = steps.path(name)
    for ld in loads:
        reps = []
        for r in range(int(c["repeats"])):
            name = f"replay-{design}-{ld.name}-r{r}"
            conf = {"deploy": repr(dep.cfg), "loadgen": c["loadgen"], "repeat": r}

            def rep_fn(d: Path, ld=ld, name=name):
                dp = dep.ensure()
                trace = steps.path(f"trace-{ld.name}") / "trace.csv"
                out = d / "run"
                shutil.rmtree(out, ignore_errors=True)
                argv = [
                    _script("splitbench-loadgen"),
                    "trace=path", f"trace.path={trace}",
                    f"target.base_url={dp.url}", f"target.model={dep.cfg.model_dir}",
                    f"target.max_model_len={dep.cfg.max_model_len}",
                    f"seed={c['seed']}", f"hydra.run.dir={out}",
                    *c["loadgen"]["overrides"],
                ]  # fmt: skip
                from experiments.validation.procs import parse_cpus

                sup.watch()
                try:
                    _run_tool(name, argv, d / "loadgen.log", float(c["loadgen"]["timeout_s"]),
                              cpus=parse_cpus(c["loadgen"].get("cpus")))  # fmt: skip
                except (KeyboardInterrupt, StepError):
                    sup.check(name, grace_s=3.0)  # a server that died explains the failure
                    raise
                finally:
                    sup.unwatch()
                    if dp.cfg.design == "splitwise":
                        dp.clear_kv_storage()
                sup.check(name)
                summ = json.loads((out / "summary.json").read_text())
                return {"dir": str(out), "completed": summ.get("requests", {}).get("completed")}

            steps.run(name, conf, rep_fn, inputs=[f"trace-{ld.name}"])
            reps.append(steps.path(name) / "run")
        if ld.name in sim_dirs:
            name = f"compare-{design}-{ld.name}"

            def cmp_fn(d: Path, ld=ld, reps=reps):
                from common.atomic import write_text_atomic

                # splitwise: every token the client sees comes from the decode instance
                sim = load_run(sim_dirs[ld.name],
                               first_token="decode" if design == "splitwise" else "prompt")  # fmt: skip
                reals = [load_run(p) for p in reps]
                df = compare_runs(sim, reals, design=design, load=ld.name,
                                  trim=float(c["compare"]["trim"]))  # fmt: skip
                write_text_atomic(d / "errors.csv", df.to_csv(index=False, float_format="%.6g"))
                plot_cdfs(sim, reals, d / "cdf.png", title=f"{design}, {ld.name}")
                return {"errors": str(d / "errors.csv"), "cdf": str(d / "cdf.png")}

            inputs = [f"simulate-{design}-{ld.name}"] + [
                f"replay-{design}-{ld.name}-r{r}" for r in range(int(c["repeats"]))
            ]
            key = {"trim": c["compare"]["trim"], "first_token": "decode" if design == "splitwise"
                   else "prompt"}  # fmt: skip
            steps.run(name, key, cmp_fn, inputs=inputs)
        elif not c["simulate"]["enabled"] or c["profile"]["mode"] == "skip":
            pass
        else:  # pragma: no cover - simulate ran for every load above
            raise StepError(f"compare-{design}-{ld.name}", "no simulated run")


def _report(c: dict, loads, steps, run_dir: Path) -> int:
    """report.md, its CSVs and figures over every compare step (experiments.validation.report);
    also into ``report_dir`` when set."""
    from experiments.validation.report import write_report

    out = c.get("report_dir")
    argv = ["splitbench-validate", *sys.argv[1:]]
    return write_report(c, loads, steps, run_dir, Path(out).resolve() if out else None, argv)


def main(argv: list[str] | None = None) -> None:
    launch("validate", run, _validate, argv)


if __name__ == "__main__":
    main()
