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

Steps 7 to 8 talk to the running deployment (:mod:`.live`); the others run our console scripts
(:mod:`.tools`) or pure code.

A failure is one line naming the step, an :class:`~experiments.validation.errors.StepError`;
Ctrl-C propagates as KeyboardInterrupt (the app prints one line, exit 130). Either way every
finished step keeps its output and every server started is stopped (process groups).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from experiments.validation.config import ValidateConfig, parse_cpus
from experiments.validation.errors import StepError
from experiments.validation.live import (
    LazyDeployment,
    calibrate_step,
    probe_step,
    replay_step,
    trace_step,
)
from experiments.validation.tools import run_tool, script


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
    # every invocation's records, appended (a resumed run keeps those of the real runs it reuses)
    quiet = _earlier_preflight(run_dir / "preflight.json")
    quiet.append(check_quiet(c.preflight.max_loadavg, c.preflight.on_busy, "at the start"))
    steps = Steps(run_dir, log=lambda s: print(s, flush=True))
    if quiet[-1]["busy"]:
        print(f"warning: busy machine (1-minute load {quiet[-1]['load1']:.2f}): flagged",
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
                                     f"before design {design}",
                                     settle_s=c.preflight.settle_s))  # fmt: skip
            write_json_atomic(run_dir / "preflight.json", {"loadavg": quiet})
            dep = LazyDeployment(design, c, run_dir, sup, model_dir)
            try:
                by_design[design] = _design(c, design, loads, steps, dep, sup)
            finally:
                dep.stop()
        from experiments.validation.report import write_report

        out = Path(c.report_dir).resolve() if c.report_dir else None
        every = list({ld.name: ld for lds in by_design.values() for ld in lds}.values())
        rows = write_report(c, every, steps, run_dir, out, argv or ["splitbench-validate"],
                            by_design)  # fmt: skip
    print(f"validation run dir: {run_dir} ({len(steps.ran)} steps ran, {len(steps.reused)} "
          "reused)")  # fmt: skip
    return {"run_dir": str(run_dir), "ran": steps.ran, "reused": steps.reused, "rows": rows}


def _earlier_preflight(path: Path) -> list[dict]:
    """The preflight records of earlier invocations in this run dir ([] without)."""
    import json

    try:
        return list(json.loads(path.read_text()).get("loadavg") or [])
    except (OSError, ValueError, AttributeError):
        return []


def _profile(c: ValidateConfig, design: str, steps, model_dir: str) -> tuple[str | None, str]:
    """(the profile source of a design's instances (None: profile.mode=skip), its step)."""
    prof = c.profile
    name = f"profile-{design}"
    if prof.mode == "skip":
        return None, name
    if prof.mode == "source":
        src = str(prof.source)
        steps.run(name, {"source": src}, lambda d: {"source": src})
        return src, name
    # measure: the design's first instance runs the model with the same settings on its own
    # core(s). per_design (the default): measured again right before each design's block (the
    # machine's own speed drifts by 5-20% within minutes to an hour, NOTES.md), so each design is
    # simulated with the engine as fast as it is then; otherwise one profile serves every design
    # whose first instance has the same settings (the port aside): step "profile"
    d = c.deploy
    inst = d.colocated if design.startswith("baseline") else d.prefill

    def settings(x):
        return {k: v for k, v in asdict(x).items() if k not in ("port", "server_cpus")}

    if not prof.per_design and settings(d.colocated) == settings(d.prefill):
        name = "profile"
    conf = {"model_dir": model_dir, "overrides": list(prof.overrides), "instance": settings(inst),
            "device": d.device, "dtype": d.dtype,
            **({"design": design} if prof.per_design else {})}  # fmt: skip
    cpus = parse_cpus(inst.cpus) if d.device == "cpu" else None

    def fn(out: Path):
        mbt = inst.max_num_batched_tokens or c.simulate.default_max_num_batched_tokens
        argv = [
            script("splitbench-characterize"),
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


def _design(c: ValidateConfig, design: str, loads, steps, dep: LazyDeployment, sup) -> list:
    """Every step of one design; returns its loads (the ladder's, when enabled)."""
    from experiments.validation.simargs import decode_step_s, handover_overrides

    source, prof_step = _profile(c, design, steps, dep.model_dir)
    kv_ov: list[str] = []
    cal = None
    if design == "splitwise" and c.calibrate.enabled:
        # before the simulation: measured on calibration requests, never on the replays compared
        cal = calibrate_step(c, design, steps, dep, sup)
        if c.simulate.machine_policy[design] != "vllm":
            # the paper's policy: the calibrated hand-over as the KV link (a mean tail)
            kv_ov = handover_overrides(cal, decode_step_s(source), int(c.calibrate.block_size))
    probes = None
    if source is not None and c.probes.enabled:
        probes = probe_step(c, design, steps, dep, sup, source, prof_step, cal is not None)
    sim_dirs: dict[str, Path] = {}
    pred = late = None
    if source is not None:
        loads, sim_dirs, pred, late = _simulate(c, design, loads, steps, source, prof_step,
                                                probes, kv_ov)  # fmt: skip
    real_dirs = _real(c, design, loads, steps, dep, sup, sim_dirs, late)
    if sim_dirs:
        _judge(c, design, loads, steps, sim_dirs, real_dirs, pred, late is not None)
    return loads


def _simulate(c: ValidateConfig, design: str, loads, steps, source: str, prof_step: str,
              probes: dict | None, kv_ov: list[str]):  # fmt: skip
    """``fit-<design>``, the ladder's ``predict-<design>`` (when enabled) and each load's
    ``simulate-<design>-<load>``; (the loads, their simulated run folders, the prediction, and
    ``late``: with ``simulate.speed_sentinel``, a function (load, its real runs) -> the load's
    simulated run folder, run after the rung's speed sentinel, instead of the folders now)."""
    from experiments.validation.sentinel import applied
    from experiments.validation.simargs import replay_argv, sim_overrides
    from experiments.validation.workload import build_trace

    fit = f"fit-{design}"

    def fit_fn(d: Path):
        argv = [script("splitbench-profiles"), "fit", "--source", source]
        run_tool(fit, argv, d / "fit.log", 600)
        return {"source": source, "log": str(d / "fit.log")}

    steps.run(fit, {"source": source}, fit_fn, inputs=[prof_step])
    ov = [*sim_overrides(c, design, source, probes), *kv_ov]

    def simulate(trace: Path, out: Path, name: str = f"predict-{design}", f: float = 1.0,
                 rov: list[str] | None = None) -> Path:  # fmt: skip
        # f, rov: the engine at the speed the rung's sentinel measured (sentinel.applied)
        argv = replay_argv(trace, out, source, c.seed, ov if rov is None else rov, f)
        run_tool(name, argv, out / "replay.log", 1800)
        return out

    pred = None
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
            steps.run(trace_step(c, design, ld), asdict(ld),
                      lambda d, ld=ld: build_trace(ld, d))  # fmt: skip

    def sim_load(ld, reps: list[Path] | None = None) -> Path:
        name = f"simulate-{design}-{ld.name}"
        tstep = trace_step(c, design, ld)
        f, rov, info = 1.0, ov, {}
        inputs = [fit, tstep]
        key = {"overrides": ov, "source": source}
        if reps is not None:
            mode = c.simulate.speed_sentinel_as
            sents = [steps.results.get(p.parent.name, {}).get("sentinel") for p in reps]
            rov, f, info = applied(ov, sents, mode)
            inputs += [p.parent.name for p in reps]
            key = {"overrides": rov, "source": source, "speed_factor": round(f, 6),
                   **({"sentinel_as": mode} if mode != "scale" else {})}  # fmt: skip

        def sim_fn(d: Path):
            simulate(steps.path(tstep) / "trace.csv", d, name, f, rov)
            return {"dir": str(d), "speed_factor": f, **info}

        steps.run(name, key, sim_fn, inputs=inputs)
        return steps.path(name)

    sim_dirs: dict[str, Path] = {}
    late = None
    if c.simulate.enabled:
        if c.simulate.speed_sentinel and probes is not None and c.probes.sentinel_streams:
            late = sim_load
        else:
            sim_dirs = {ld.name: sim_load(ld) for ld in loads}
    return loads, sim_dirs, pred, late


def _real(c: ValidateConfig, design: str, loads, steps, dep: LazyDeployment, sup,
          sim_dirs: dict[str, Path], late=None) -> dict[str, list[Path]]:  # fmt: skip
    """Each load's real runs (``replay-<design>-<load>-r<k>``) and, where it was simulated, its
    ``compare-<design>-<load>``; the real run folders per load. ``late`` (see :func:`_simulate`):
    each load simulated after its runs' speed sentinels (added to ``sim_dirs``)."""
    from experiments.validation.compare import compare_runs, load_run, plot_cdfs

    first = "decode" if design == "splitwise" else "prompt"
    real_dirs: dict[str, list[Path]] = {}
    for ld in loads:
        reps = [replay_step(c, design, ld, r, steps, dep, sup) for r in range(int(c.repeats))]
        real_dirs[ld.name] = reps
        if late is not None:
            sim_dirs[ld.name] = late(ld, reps)
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
    return real_dirs


def _judge(c: ValidateConfig, design: str, loads, steps, sim_dirs, real_dirs, pred,
           same_runs: bool = False) -> None:  # fmt: skip
    """``judge-<design>``: errors.csv (paired bootstrap intervals) and capacity.csv (``same_runs``:
    the simulated capacity and R* from the simulated rungs, :func:`.scoring.design_tables`)."""
    from common.atomic import write_text_atomic
    from experiments.validation.scoring import design_tables

    traces = {ld.name: steps.path(trace_step(c, design, ld)) / "trace.csv" for ld in loads}
    judged = [ld for ld in loads if ld.name in sim_dirs]
    inputs = [f"compare-{design}-{ld.name}" for ld in judged]
    if pred is not None:
        inputs.append(f"predict-{design}")

    def fn(d: Path):
        err, cap = design_tables(c, design, judged, sim_dirs, real_dirs, traces, pred,
                                 same_runs)  # fmt: skip
        write_text_atomic(d / "errors.csv", err.to_csv(index=False, float_format="%.6g"))
        write_text_atomic(d / "capacity.csv", cap.to_csv(index=False, float_format="%.6g"))
        return {"errors": str(d / "errors.csv"), "capacity": str(d / "capacity.csv")}

    key = {"compare": asdict(c.compare), "ladder_slo": asdict(c.ladder.slo),
           "rstar_trace": c.ladder.rstar_trace, "same_runs": same_runs}  # fmt: skip
    steps.run(f"judge-{design}", key, fn, inputs=inputs)
