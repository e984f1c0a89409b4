"""The steps that talk to the running deployment: ``calibrate-<design>``, ``probe-<design>`` and
``replay-<design>-<load>-r<k>`` (:mod:`.pipeline` lists every step), and the deployment they
share, started on the first of them that needs it (:class:`LazyDeployment`).

Each runs under :func:`watched`: the supervisor watches the servers (one that dies explains the
failure, named in one line), the disaggregated design's connector storage is emptied after it,
and its records (:class:`Records`: the engines' prefix-cache counters, which must not move, their
CPU run-delay, the machine's load) go beside its output.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
from dataclasses import asdict
from pathlib import Path

from experiments.validation import engine_metrics as em
from experiments.validation.config import ValidateConfig, parse_cpus
from experiments.validation.errors import StepError
from experiments.validation.tools import run_tool, script


def prompt_seed(seed: int, design: str, load: str, repeat: int) -> int:
    """The load generator's prompt-id seed of one real run: its own for every (design, load,
    repeat), so that no run sends the token ids of another (no stored KV can match)."""
    h = hashlib.sha256(f"{seed}/{design}/{load}/{repeat}".encode()).digest()
    return int.from_bytes(h[:4], "big") & 0x7FFFFFFF


def trace_step(c: ValidateConfig, design: str, ld) -> str:
    """A load's trace step: shared by the designs, except a ladder's (placed per design)."""
    return f"trace-{design}-{ld.name}" if c.ladder.enabled else f"trace-{ld.name}"


def loadgen_cores(c: ValidateConfig, design: str) -> list[int] | None:
    """The load generator's cores: ``loadgen.cpus``, else the design's client cores
    (:func:`experiments.validation.deploy.client_cores`: a free core, else the first engine's:
    splitwise's prefill instance's, baseline2's first instance's)."""
    from experiments.validation.deploy import client_cores

    return parse_cpus(c.loadgen.cpus) or client_cores(c.deploy, design)


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
        """What a step that talks to the deployment depends on (with where its processes run)."""
        from experiments.validation.deploy import placement

        return {"design": self.design, "model_dir": self.model_dir, "deploy": asdict(self.cfg),
                "cores": placement(self.cfg, self.design)}  # fmt: skip

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


@contextlib.contextmanager
def watched(name: str, dp, sup, clear_kv: bool):
    """The body of step ``name`` against the deployment ``dp`` under the supervisor's watch: a
    server that died explains a failure or Ctrl-C (one line naming the step); the connector
    storage emptied after it when ``clear_kv``."""
    sup.watch()
    try:
        yield
    except (KeyboardInterrupt, StepError):
        sup.check(name, grace_s=3.0)  # a server that died explains the failure
        why = dp.engine_failure()
        if why:
            raise StepError(name, why) from None
        raise
    finally:
        sup.unwatch()
        if clear_kv:
            dp.clear_kv_storage()


class Records:
    """What a step that talks to the deployment records beside its output: the engines'
    prefix-cache counters before and after (:mod:`.engine_metrics`), their CPU run-delay and the
    machine's load (:mod:`.preflight`)."""

    def __init__(self, dp, counters: bool = True):
        from experiments.validation import engine_metrics as em
        from experiments.validation.preflight import RunDelay, loadavg

        self.dp = dp
        self.before = ({n: em.read_counters(u) for n, u in dp.instances.items()}
                       if counters else None)  # fmt: skip
        self.load0 = loadavg()
        self.delay = RunDelay(dp.groups()).start()

    def prefix_cache(self) -> dict:
        """Each instance's counter differences since the start."""
        from experiments.validation import engine_metrics as em

        after = {n: em.read_counters(u) for n, u in self.dp.instances.items()}
        return {n: em.diff(self.before[n], after[n]) for n in self.before}

    def loadavg(self) -> dict:
        from experiments.validation.preflight import loadavg

        return {"before": self.load0, "after": loadavg()}

    def check_no_reuse(self, name: str, deltas: dict) -> None:
        """StepError when an engine served cached KV (the decode instance loads the hand-over)."""
        from experiments.validation import engine_metrics as em

        em.check_no_reuse(name, deltas, loader="decode" if self.dp.design == "splitwise" else None)


def calibrate_step(c: ValidateConfig, design: str, steps, dep: LazyDeployment, sup) -> dict:
    """``calibrate-<design>``: the KV-transfer calibration (:mod:`.calibrate`)."""
    from experiments.validation.calibrate import calibrate_kv_transfer

    cal = c.calibrate
    spec = c.model.spec()
    name = f"calibrate-{design}"

    def cal_fn(d: Path):
        dp = dep.ensure()
        rec = Records(dp, counters=False)
        with watched(name, dp, sup, clear_kv=True):
            res = calibrate_kv_transfer(
                dp.instances["prefill"], dp.url, d, model=str(dep.model_dir),
                lengths=list(cal.lengths), repeats=int(cal.repeats), seed=int(c.seed),
                vocab=spec.vocab_size, kv_bytes_per_token=spec.kv_bytes_per_token,
                block_size=int(cal.block_size), storage_bytes=dp.kv_storage_bytes,
                injected=dp.injected_tokens,
                engine=lambda: em.read_counters(dp.instances["prefill"]),
            )  # fmt: skip
            res["records"] = {"run_delay": rec.delay.stop(), "loadavg": rec.loadavg()}
            return res

    key = {"deployment": dep.key(), "calibrate": asdict(cal),
           "kv_bytes_per_token": spec.kv_bytes_per_token}  # fmt: skip
    return steps.run(name, key, cal_fn, inputs=["model"])


def probe_step(c: ValidateConfig, design: str, steps, dep: LazyDeployment, sup, source: str,
               prof_step: str, calibrated: bool) -> dict:  # fmt: skip
    """``probe-<design>``: the serving probes (:mod:`experiments.validation.probes`) on the
    running deployment; their terms, fits and the engines' KV blocks (serving.json)."""
    import pandas as pd

    from experiments.validation.probes import run_probes
    from experiments.validation.serving_fit import PhaseTimes

    name = f"probe-{design}"
    spec = c.model.spec()
    cal_step = f"calibrate-{design}" if calibrated else None
    inst = c.deploy.decode if design == "splitwise" else c.deploy.colocated

    def fn(d: Path):
        from common.atomic import write_json_atomic

        times = PhaseTimes.from_source(source, c.model.name, c.simulate.profile_gpu)
        cal = steps.results.get(cal_step) if cal_step else None
        rows = None
        if cal_step and (steps.path(cal_step) / "kv_transfer.csv").is_file():
            rows = pd.read_csv(steps.path(cal_step) / "kv_transfer.csv")
        dp = dep.ensure()
        rec = Records(dp)
        with watched(name, dp, sup, clear_kv=dp.design == "splitwise"):
            res = run_probes(design, dp, c.probes, d, model=str(dep.model_dir), seed=int(c.seed),
                             vocab=spec.vocab_size, times=times,
                             block_size=int(c.calibrate.block_size), cal=cal,
                             max_num_seqs=int(inst.max_num_seqs),
                             max_model_len=int(c.deploy.max_model_len),
                             cal_rows=rows)  # fmt: skip
        deltas = rec.prefix_cache()
        reuse, engine = em.split(deltas)
        write_json_atomic(d / "records.json", {
            "prefix_cache": reuse, "engine": engine, "run_delay": rec.delay.stop(),
            "loadavg": rec.loadavg()})  # fmt: skip
        rec.check_no_reuse(name, deltas)
        return res

    key = {"deployment": dep.key(), "probes": asdict(c.probes), "source": source,
           "seed": c.seed, "model": c.model.name, "profile_gpu": c.simulate.profile_gpu,
           "block_size": c.calibrate.block_size}  # fmt: skip
    inputs = ["model", prof_step, *([cal_step] if cal_step else [])]
    return steps.run(name, key, fn, inputs=inputs)


def replay_step(c: ValidateConfig, design: str, ld, r: int, steps, dep: LazyDeployment,
                sup) -> Path:  # fmt: skip
    """One real run of load ``ld`` (repeat ``r``) against the deployment; its run folder."""
    name = f"replay-{design}-{ld.name}-r{r}"
    spec = c.model.spec()
    seed = prompt_seed(c.seed, design, ld.name, r)
    conf = {"deployment": dep.key(), "loadgen": asdict(c.loadgen), "repeat": r, "seed": seed,
            "loadgen_cores": loadgen_cores(c, design)}  # fmt: skip
    # the speed sentinel compares with the probes' run: only where the probes ran
    sentinel_on = bool(c.probes.enabled and c.probes.sentinel_streams
                       and f"probe-{design}" in steps.results)  # fmt: skip
    inputs = [trace_step(c, design, ld), *([f"probe-{design}"] if sentinel_on else [])]
    if sentinel_on:
        conf["sentinel"] = {k: getattr(c.probes, k) for k in
                            ("sentinel_streams", "delta_prompt_tokens", "delta_output_tokens",
                             "sentinel_after")}  # fmt: skip

    def rep_fn(d: Path):
        from common.atomic import write_json_atomic

        dp = dep.ensure()
        trace = steps.path(trace_step(c, design, ld)) / "trace.csv"
        out = d / "run"
        shutil.rmtree(out, ignore_errors=True)
        argv = [
            script("splitbench-loadgen"),
            "trace=path", f"trace.path={trace}",
            f"target.base_url={dp.url}", f"target.model={dp.model_dir}",
            f"target.max_model_len={c.deploy.max_model_len}",
            f"target.vocab_size={spec.vocab_size}",
            f"seed={seed}", f"hydra.run.dir={out}",
            *c.loadgen.overrides,
        ]  # fmt: skip
        sent = None
        if sentinel_on:
            with watched(name, dp, sup, clear_kv=dp.design == "splitwise"):
                try:
                    sent = speed_sentinel(c, design, ld.name, r, dp,
                                          steps.path(f"probe-{design}"))  # fmt: skip
                except StepError as e:
                    raise StepError(name, f"speed sentinel: {e.reason}") from None
            write_json_atomic(d / "sentinel.json", sent)
        rec = Records(dp)
        with watched(name, dp, sup, clear_kv=dp.design == "splitwise"):
            run_tool(name, argv, d / "loadgen.log", float(c.loadgen.timeout_s),
                     cpus=loadgen_cores(c, design))  # fmt: skip
        sup.check(name)
        rd = rec.delay.stop()
        deltas = rec.prefix_cache()
        if sent is not None and c.probes.sentinel_after:
            with watched(name, dp, sup, clear_kv=dp.design == "splitwise"):
                try:
                    after = speed_sentinel(c, design, f"{ld.name}/after", r, dp,
                                           steps.path(f"probe-{design}"))  # fmt: skip
                except StepError as e:
                    raise StepError(name, f"speed sentinel after the run: {e.reason}") from None
            sent = bracketed(sent, after)
            write_json_atomic(d / "sentinel.json", sent)
        reuse, engine = em.split(deltas)
        write_json_atomic(d / "records.json", {
            "prompt_seed": seed, "prefix_cache": reuse, "engine": engine, "run_delay": rd,
            "loadavg": rec.loadavg(),
            "busy": rec.load0["load1"] > c.preflight.max_loadavg})  # fmt: skip
        rec.check_no_reuse(name, deltas)
        summ = json.loads((out / "summary.json").read_text())
        return {"dir": str(out), "completed": summ.get("requests", {}).get("completed"),
                "records": str(d / "records.json"), "sentinel": sent}  # fmt: skip

    steps.run(name, conf, rep_fn, inputs=inputs)
    return steps.path(name) / "run"


def bracketed(before: dict, after: dict) -> dict:
    """A rung's sentinel record from its readings before and after the run: the before
    reading's fields, ``after`` (the second reading), ``factor_before`` and ``factor`` = the mean
    of the two factors (the speed across the rung)."""
    return {**before, "after": after, "factor_before": before["factor"],
            "factor": 0.5 * (float(before["factor"]) + float(after["factor"]))}


def speed_sentinel(c: ValidateConfig, design: str, load: str, r: int, dp, probe_dir: Path) -> dict:
    """The rung's speed sentinel (:mod:`experiments.validation.sentinel`) on the running
    deployment: {'streams', 'gap_s', 'probe_gap_s', 'factor', 'n_gaps', 'probe_n_gaps', 't_s'}."""
    from experiments.validation.sentinel import measure, probe_gap, sentinel_seed

    pc = c.probes
    n, ref, ref_n = probe_gap(probe_dir / "probes.csv", int(pc.sentinel_streams))
    m = measure(dp.url, model=str(dp.model_dir), streams=n,
                prompt_tokens=int(pc.delta_prompt_tokens),
                output_tokens=int(pc.delta_output_tokens),
                seed=sentinel_seed(int(c.seed), design, load, r),
                vocab=c.model.spec().vocab_size, timeout_s=float(pc.timeout_s),
                design=design)  # fmt: skip
    return {"streams": n, "gap_s": m["gap_s"], "probe_gap_s": ref, "factor": m["gap_s"] / ref,
            "n_gaps": m["n_gaps"], "probe_n_gaps": ref_n, "t_s": m["t_s"]}  # fmt: skip
