"""The validation pipeline: every step of a run, in order, cached in the run dir.

Per design (``baseline``: one co-located vLLM; ``splitwise``: a prefill and a decode vLLM joined
by a KV connector, behind the proxy), every step a folder of the run dir, reused on rerun when
its config and inputs did not change (:mod:`experiments.validation.steps`):

0. ``preflight``: every port free, the machine quiet (``/proc/loadavg``; refused or flagged);
1. ``model``: the model folder (built from the model spec, or the user's own, checked);
2. ``trace-<load>``: the scaled trace of each load level (read by both sim and load generator);
3. ``profile-<design>``: the instances' phases, ``splitbench-characterize engine=vllm``
   (``profile.mode=source``: an existing profile; ``skip``: no profile, no simulation);
4. ``fit-<design>``: ``splitbench-profiles fit`` on it (held-out error);
5. ``simulate-<design>-<load>``: ``splitbench-replay`` on the trace with the profile;
6. ``deploy-<design>``: the servers (started only when a later step needs them; never cached);
7. ``calibrate-<design>``: the KV-transfer calibration (splitwise);
7b. ``probe-<design>``: the serving probes (:mod:`experiments.validation.probes`: alpha, delta,
   the hand-over stall and legs, the engines' KV blocks) on the running deployment, before the
   simulation and the replays: the serving component and KV capacity the simulator is given;
8. ``replay-<design>-<load>-r<k>``: ``splitbench-loadgen`` against the deployment, with its own
   prompt ids (seeded by design, load and repeat); the engines' prefix-cache counters (must not
   move), their CPU run-delay and the machine's load go into the step's record;
9. ``compare-<design>-<load>``: error table and CDF overlays (sim dashed, real solid);
10. ``report``: ``errors.csv`` and ``report.md`` over every design and load.

A failure is one line naming the step, an :class:`~experiments.validation.errors.StepError`;
Ctrl-C propagates as KeyboardInterrupt (the app prints one line, exit 130). Either way every
finished step keeps its output and every server started is stopped (process groups).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

from experiments.validation.config import ValidateConfig, parse_cpus
from experiments.validation.errors import StepError


def _script(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def run_tool(step: str, argv: list[str], log: Path, timeout_s: float, cpus=None) -> None:
    """Run a console script (one of ours) with its output in ``log``; StepError on failure."""
    from experiments.validation.procs import log_note

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
        raise StepError(step, f"{Path(argv[0]).name} exited {rc} ({log_note(log)})")


def prompt_seed(seed: int, design: str, load: str, repeat: int) -> int:
    """The load generator's prompt-id seed of one real run: its own for every (design, load,
    repeat), so that no run sends the token ids of another (no stored KV can match)."""
    h = hashlib.sha256(f"{seed}/{design}/{load}/{repeat}".encode()).digest()
    return int.from_bytes(h[:4], "big") & 0x7FFFFFFF


class LazyDeployment:
    """The deployment of one design, started on the first step that needs it."""

    def __init__(self, design: str, c: ValidateConfig, run_dir: Path, sup, model_dir: str):
        self.design = design
        self.cfg = c.deploy
        self.model_dir = model_dir
        self.step = f"deploy-{design}"
        self.dir = run_dir / self.step
        self.sup = sup
        self.dep = None

    def key(self) -> dict:
        """What a step that talks to the deployment depends on."""
        return {"design": self.design, "model_dir": self.model_dir, "deploy": asdict(self.cfg)}

    def ensure(self):
        from common.atomic import write_json_atomic
        from experiments.validation.deploy import Deployment

        if self.dep is None:
            self.dir.mkdir(parents=True, exist_ok=True)
            self.dep = Deployment(self.design, self.model_dir, self.cfg, self.dir, self.sup)
            print(f"[{self.step}] starting {self.design} deployment", flush=True)
            info = self.dep.start(self.step)
            write_json_atomic(self.dir / "deploy.json", info)
            ups = ", ".join(f"{n} {s['startup_s']:.0f} s" for n, s in info["servers"].items())
            print(f"[{self.step}] up at {self.dep.url} ({ups})", flush=True)
        self.sup.check(self.step)
        return self.dep

    def stop(self):
        if self.dep is not None:
            self.dep.stop()
            self.dep = None


def model_step(c: ValidateConfig, steps) -> str:
    from experiments.validation.config import check_model_dir
    from experiments.validation.model_dir import build_model_dir

    m = c.model
    spec = m.spec()

    def fn(d: Path):
        if m.build:
            build_model_dir(m.dir, spec, seed=m.seed, dtype=c.deploy.dtype)
        try:
            check_model_dir(m.dir, spec)
        except Exception as e:  # noqa: BLE001 - ExperimentError: one line naming the folder
            raise StepError("model", str(e)) from None
        return {"dir": str(m.dir), "spec": spec.name, "kv_bytes_per_token": spec.kv_bytes_per_token}

    key = {"dir": str(m.dir), "spec": asdict(spec), "build": m.build, "seed": m.seed,
           "dtype": c.deploy.dtype}  # fmt: skip
    steps.run("model", key, fn)
    return str(m.dir)


def run(c: ValidateConfig, run_dir: str | Path, argv: list[str] | None = None) -> dict:
    """The whole validation (module doc) into ``run_dir``; {'run_dir', 'ran', 'reused', 'rows'}."""
    from common.atomic import write_json_atomic
    from experiments.validation.preflight import check_ports, check_quiet
    from experiments.validation.procs import Supervisor
    from experiments.validation.steps import Steps
    from experiments.validation.workload import build_trace

    run_dir = Path(run_dir).resolve()
    check_ports(c)
    quiet = [check_quiet(c.preflight.max_loadavg, c.preflight.on_busy, "at the start")]
    steps = Steps(run_dir, log=lambda s: print(s, flush=True))
    if quiet[0]["busy"]:
        print(f"warning: busy machine (1-minute load {quiet[0]['load1']:.2f}): flagged",
              flush=True)  # fmt: skip
    write_json_atomic(run_dir / "preflight.json", {"loadavg": quiet})
    with Supervisor() as sup:
        model_dir = model_step(c, steps)
        loads = [] if c.ladder.enabled else c.loads_resolved()
        for ld in loads:
            steps.run(f"trace-{ld.name}", asdict(ld), lambda d, ld=ld: build_trace(ld, d))
        by_design: dict[str, list] = {}
        for design in c.designs:
            quiet.append(check_quiet(c.preflight.max_loadavg, c.preflight.on_busy,
                                     f"before design {design}"))  # fmt: skip
            write_json_atomic(run_dir / "preflight.json", {"loadavg": quiet})
            dep = LazyDeployment(design, c, run_dir, sup, model_dir)
            try:
                by_design[design] = _design(c, design, loads, steps, dep, sup)
            finally:
                dep.stop()
        from experiments.validation.report import write_report

        out = Path(c.report_dir).resolve() if c.report_dir else None
        every = list({ld.name: ld for lds in by_design.values() for ld in lds}.values())
        rows = write_report(c, every, steps, run_dir, out, argv or ["splitbench-validate"])
    print(f"validation run dir: {run_dir} ({len(steps.ran)} steps ran, {len(steps.reused)} "
          "reused)")  # fmt: skip
    return {"run_dir": str(run_dir), "ran": steps.ran, "reused": steps.reused, "rows": rows}


def _profile(c: ValidateConfig, design: str, steps, model_dir: str) -> tuple[str | None, str]:
    """(the profile source of a design's instances (None: profile.mode=skip), its step)."""
    prof = c.profile
    design = "baseline" if design == "baseline2" else design  # the same instances
    name = f"profile-{design}"
    if prof.mode == "skip":
        return None, name
    if prof.mode == "source":
        src = str(prof.source)
        steps.run(name, {"source": src}, lambda d: {"source": src})
        return src, name
    # measure: each instance runs the model with the same settings on its own core(s); one
    # profile serves both designs when the co-located and prefill instances have the same
    # settings (the port aside): step "profile"
    d = c.deploy
    inst = d.colocated if design == "baseline" else d.prefill

    def settings(x):
        return {k: v for k, v in asdict(x).items() if k != "port"}

    if settings(d.colocated) == settings(d.prefill):
        name = "profile"
    conf = {"model_dir": model_dir, "overrides": list(prof.overrides), "instance": settings(inst),
            "device": d.device, "dtype": d.dtype}  # fmt: skip
    cpus = parse_cpus(inst.cpus) if d.device == "cpu" else None

    def fn(out: Path):
        mbt = inst.max_num_batched_tokens or c.simulate.default_max_num_batched_tokens
        argv = [
            _script("splitbench-characterize"),
            "engine=vllm",
            f"model={c.model.name}",
            f"device={d.device}",
            f"vllm.model_dir={model_dir}",
            f"vllm.max_num_seqs={inst.max_num_seqs}",
            f"vllm.max_num_batched_tokens={mbt}",
            f"vllm.kvcache_gib={max(1, round(float(inst.kvcache_gib)))}",
            f"out_dir={out}",
            "run_name=profile",
            f"hydra.run.dir={out / 'hydra'}",
            *([f"vllm.omp_bind={','.join(map(str, cpus))}"] if cpus else []),
            *prof.overrides,
        ]  # fmt: skip
        run_tool(name, argv, out / "characterize.log", 3600, cpus=cpus)
        return {"source": str(out / "profile" / "profiles.csv")}

    res = steps.run(name, conf, fn, inputs=["model"])
    return str(res.get("source") or steps.path(name)), name


def _calibrate(c: ValidateConfig, design: str, steps, dep: LazyDeployment, sup) -> dict:
    from experiments.validation.calibrate import calibrate_kv_transfer

    cal = c.calibrate
    spec = c.model.spec()
    name = f"calibrate-{design}"

    def cal_fn(d: Path):
        from experiments.validation.preflight import RunDelay, loadavg

        dp = dep.ensure()
        load0 = loadavg()
        delay = RunDelay(dp.groups()).start()
        sup.watch()
        try:
            res = calibrate_kv_transfer(
                dp.instances["prefill"], dp.url, d, model=str(dep.model_dir),
                lengths=list(cal.lengths), repeats=int(cal.repeats), seed=int(c.seed),
                vocab=spec.vocab_size, kv_bytes_per_token=spec.kv_bytes_per_token,
                block_size=int(cal.block_size), storage_bytes=dp.kv_storage_bytes,
                injected=dp.injected_tokens,
            )  # fmt: skip
            res["records"] = {"run_delay": delay.stop(),
                              "loadavg": {"before": load0, "after": loadavg()}}  # fmt: skip
            return res
        except (KeyboardInterrupt, StepError):
            sup.check(name, grace_s=3.0)  # a server that died explains the failure
            why = dp.engine_failure()
            if why:
                raise StepError(name, why) from None
            raise
        finally:
            sup.unwatch()
            dp.clear_kv_storage()

    key = {"deployment": dep.key(), "calibrate": asdict(cal),
           "kv_bytes_per_token": spec.kv_bytes_per_token}  # fmt: skip
    return steps.run(name, key, cal_fn, inputs=["model"])


def _probe(c: ValidateConfig, design: str, steps, dep: LazyDeployment, sup, source: str,
           prof_step: str, calibrated: bool) -> dict:  # fmt: skip
    """``probe-<design>``: the serving probes (:mod:`experiments.validation.probes`) on the
    running deployment; their terms, fits and the engines' KV blocks (serving.json)."""
    import pandas as pd

    from experiments.validation import engine_metrics as em
    from experiments.validation.probes import PhaseTimes, run_probes

    name = f"probe-{design}"
    spec = c.model.spec()
    cal_step = f"calibrate-{design}" if calibrated else None
    inst = c.deploy.decode if design == "splitwise" else c.deploy.colocated

    def fn(d: Path):
        from common.atomic import write_json_atomic
        from experiments.validation.preflight import RunDelay, loadavg

        times = PhaseTimes.from_source(source, c.model.name, c.simulate.profile_gpu)
        cal = steps.results.get(cal_step) if cal_step else None
        rows = None
        if cal_step and (steps.path(cal_step) / "kv_transfer.csv").is_file():
            rows = pd.read_csv(steps.path(cal_step) / "kv_transfer.csv")
        dp = dep.ensure()
        before = {n: em.read_counters(u) for n, u in dp.instances.items()}
        load0 = loadavg()
        delay = RunDelay(dp.groups()).start()
        sup.watch()
        try:
            res = run_probes(design, dp, c.probes, d, model=str(dep.model_dir), seed=int(c.seed),
                             vocab=spec.vocab_size, times=times,
                             block_size=int(c.calibrate.block_size), cal=cal,
                             max_num_seqs=int(inst.max_num_seqs),
                             max_model_len=int(c.deploy.max_model_len),
                             cal_rows=rows)  # fmt: skip
        except (KeyboardInterrupt, StepError):
            sup.check(name, grace_s=3.0)  # a server that died explains the failure
            why = dp.engine_failure()
            if why:
                raise StepError(name, why) from None
            raise
        finally:
            sup.unwatch()
            if dp.design == "splitwise":
                dp.clear_kv_storage()
        after = {n: em.read_counters(u) for n, u in dp.instances.items()}
        deltas = {n: em.diff(before[n], after[n]) for n in before}
        write_json_atomic(d / "records.json", {
            "prefix_cache": deltas, "run_delay": delay.stop(),
            "loadavg": {"before": load0, "after": loadavg()}})  # fmt: skip
        em.check_no_reuse(name, deltas, loader="decode" if dp.design == "splitwise" else None)
        return res

    key = {"deployment": dep.key(), "probes": asdict(c.probes), "source": source,
           "seed": c.seed, "model": c.model.name, "profile_gpu": c.simulate.profile_gpu,
           "block_size": c.calibrate.block_size}  # fmt: skip
    inputs = ["model", prof_step, *([cal_step] if cal_step else [])]
    return steps.run(name, key, fn, inputs=inputs)


def _trace_step(c: ValidateConfig, design: str, ld) -> str:
    """A load's trace step: shared by the designs, except a ladder's (placed per design)."""
    return f"trace-{design}-{ld.name}" if c.ladder.enabled else f"trace-{ld.name}"


def _replay(c: ValidateConfig, design: str, ld, r: int, steps, dep: LazyDeployment, sup) -> Path:
    """One real run of load ``ld`` (repeat ``r``) against the deployment; its run folder."""
    from experiments.validation import engine_metrics as em
    from experiments.validation.preflight import RunDelay, loadavg

    name = f"replay-{design}-{ld.name}-r{r}"
    spec = c.model.spec()
    seed = prompt_seed(c.seed, design, ld.name, r)
    conf = {"deployment": dep.key(), "loadgen": asdict(c.loadgen), "repeat": r, "seed": seed}

    def rep_fn(d: Path):
        from common.atomic import write_json_atomic

        dp = dep.ensure()
        trace = steps.path(_trace_step(c, design, ld)) / "trace.csv"
        out = d / "run"
        shutil.rmtree(out, ignore_errors=True)
        argv = [
            _script("splitbench-loadgen"),
            "trace=path", f"trace.path={trace}",
            f"target.base_url={dp.url}", f"target.model={dp.model_dir}",
            f"target.max_model_len={c.deploy.max_model_len}",
            f"target.vocab_size={spec.vocab_size}",
            f"seed={seed}", f"hydra.run.dir={out}",
            *c.loadgen.overrides,
        ]  # fmt: skip
        before = {n: em.read_counters(u) for n, u in dp.instances.items()}
        load0 = loadavg()
        delay = RunDelay(dp.groups()).start()
        sup.watch()
        try:
            run_tool(name, argv, d / "loadgen.log", float(c.loadgen.timeout_s),
                     cpus=parse_cpus(c.loadgen.cpus))  # fmt: skip
        except (KeyboardInterrupt, StepError):
            sup.check(name, grace_s=3.0)  # a server that died explains the failure
            why = dp.engine_failure()
            if why:
                raise StepError(name, why) from None
            raise
        finally:
            sup.unwatch()
            if dp.design == "splitwise":
                dp.clear_kv_storage()
        sup.check(name)
        rd = delay.stop()
        after = {n: em.read_counters(u) for n, u in dp.instances.items()}
        deltas = {n: em.diff(before[n], after[n]) for n in before}
        rec = {"prompt_seed": seed, "prefix_cache": deltas, "run_delay": rd,
               "loadavg": {"before": load0, "after": loadavg()},
               "busy": load0["load1"] > c.preflight.max_loadavg}  # fmt: skip
        write_json_atomic(d / "records.json", rec)
        em.check_no_reuse(name, deltas, loader="decode" if dp.design == "splitwise" else None)
        summ = json.loads((out / "summary.json").read_text())
        return {"dir": str(out), "completed": summ.get("requests", {}).get("completed"),
                "records": str(d / "records.json")}  # fmt: skip

    steps.run(name, conf, rep_fn, inputs=[_trace_step(c, design, ld)])
    return steps.path(name) / "run"


def _design(c: ValidateConfig, design: str, loads, steps, dep: LazyDeployment, sup) -> list:
    """Every step of one design; returns its loads (the ladder's, when enabled)."""
    from experiments.validation.compare import compare_runs, load_run, plot_cdfs
    from experiments.validation.simargs import decode_step_s, handover_overrides, sim_overrides
    from experiments.validation.workload import build_trace

    source, prof_step = _profile(c, design, steps, dep.model_dir)
    kv_ov: list[str] = []
    cal = None
    if design == "splitwise" and c.calibrate.enabled:
        # before the simulation: measured on calibration requests, never on the replays compared
        cal = _calibrate(c, design, steps, dep, sup)
        if c.simulate.machine_policy[design] != "vllm":
            # the paper's policy: the calibrated hand-over as the KV link (a mean tail)
            kv_ov = handover_overrides(cal, decode_step_s(source), int(c.calibrate.block_size))
    probes = None
    if source is not None and c.probes.enabled:
        probes = _probe(c, design, steps, dep, sup, source, prof_step, cal is not None)
    sim_dirs: dict[str, Path] = {}
    pred = None
    if source is not None:
        fit = f"fit-{design}"

        def fit_fn(d: Path):
            argv = [_script("splitbench-profiles"), "fit", "--source", source]
            run_tool(fit, argv, d / "fit.log", 600)
            return {"source": source, "log": str(d / "fit.log")}

        steps.run(fit, {"source": source}, fit_fn, inputs=[prof_step])
        ov = [*sim_overrides(c, design, source, probes), *kv_ov]

        def simulate(trace: Path, out: Path, name: str = f"predict-{design}") -> Path:
            argv = [_script("splitbench-replay"), "trace=path", f"trace.path={trace}",
                    f"profiles.source={source}", f"seed={c.seed}", f"hydra.run.dir={out}",
                    *ov]  # fmt: skip
            run_tool(name, argv, out / "replay.log", 1800)
            return out

        if c.ladder.enabled:
            from experiments.validation.predict import ladder_loads, predict

            key = {"overrides": ov, "source": source, "ladder": asdict(c.ladder),
                   "load_defaults": asdict(c.load_defaults), "trim": c.compare.trim}  # fmt: skip
            pred = steps.run(f"predict-{design}", key,
                             lambda d: predict(c, design, d, simulate), inputs=[fit])  # fmt: skip
            loads = ladder_loads(c, pred["capacity_rps"], pred["rstar_rps"])
            print(f"[predict-{design}] C {pred['capacity_rps']:.3g} req/s, R* "
                  f"{pred['rstar_rps']:.3g} req/s: " + ", ".join(
                      f"{ld.name} {ld.rate:.3g}" for ld in loads), flush=True)  # fmt: skip
            for ld in loads:
                steps.run(_trace_step(c, design, ld), asdict(ld),
                          lambda d, ld=ld: build_trace(ld, d))  # fmt: skip
        if c.simulate.enabled:
            for ld in loads:
                name = f"simulate-{design}-{ld.name}"
                tstep = _trace_step(c, design, ld)

                def sim_fn(d: Path, tstep=tstep, name=name):
                    simulate(steps.path(tstep) / "trace.csv", d, name)
                    return {"dir": str(d)}

                steps.run(name, {"overrides": ov, "source": source}, sim_fn, inputs=[fit, tstep])
                sim_dirs[ld.name] = steps.path(name)
    first = "decode" if design == "splitwise" else "prompt"
    real_dirs: dict[str, list[Path]] = {}
    for ld in loads:
        reps = [_replay(c, design, ld, r, steps, dep, sup) for r in range(int(c.repeats))]
        real_dirs[ld.name] = reps
        if ld.name not in sim_dirs:
            continue
        name = f"compare-{design}-{ld.name}"

        def cmp_fn(d: Path, ld=ld, reps=reps):
            from common.atomic import write_text_atomic

            # splitwise: every token the client sees comes from the decode instance
            sim = load_run(sim_dirs[ld.name], first_token=first)
            reals = [load_run(p) for p in reps]
            df = compare_runs(sim, reals, design=design, load=ld.name, trim=float(c.compare.trim))
            write_text_atomic(d / "errors.csv", df.to_csv(index=False, float_format="%.6g"))
            plot_cdfs(sim, reals, d / "cdf.png", title=f"{design}, {ld.name}")
            return {"errors": str(d / "errors.csv"), "cdf": str(d / "cdf.png")}

        inputs = [f"simulate-{design}-{ld.name}"] + [
            f"replay-{design}-{ld.name}-r{r}" for r in range(int(c.repeats))
        ]
        steps.run(name, {"trim": c.compare.trim, "first_token": first}, cmp_fn, inputs=inputs)
    if sim_dirs:
        _judge(c, design, loads, steps, sim_dirs, real_dirs, pred)
    return loads


def _judge(c: ValidateConfig, design: str, loads, steps, sim_dirs, real_dirs, pred) -> None:
    """``judge-<design>``: errors.csv (paired bootstrap intervals) and capacity.csv."""
    from common.atomic import write_text_atomic
    from experiments.validation.scoring import design_tables

    traces = {ld.name: steps.path(_trace_step(c, design, ld)) / "trace.csv" for ld in loads}
    judged = [ld for ld in loads if ld.name in sim_dirs]
    inputs = [f"compare-{design}-{ld.name}" for ld in judged]
    if pred is not None:
        inputs.append(f"predict-{design}")

    def fn(d: Path):
        err, cap = design_tables(c, design, judged, sim_dirs, real_dirs, traces, pred)
        write_text_atomic(d / "errors.csv", err.to_csv(index=False, float_format="%.6g"))
        write_text_atomic(d / "capacity.csv", cap.to_csv(index=False, float_format="%.6g"))
        return {"errors": str(d / "errors.csv"), "capacity": str(d / "capacity.csv")}

    key = {"compare": asdict(c.compare), "ladder_slo": asdict(c.ladder.slo),
           "rstar_trace": c.ladder.rstar_trace}  # fmt: skip
    steps.run(f"judge-{design}", key, fn, inputs=inputs)
