#!/usr/bin/env python
"""GPU check: hardware ceilings and a reduced phase sweep of both models' TP-8 shards.

One command on one H100/H200 (under 5 minutes), no installs, no power limits touched:

    python benchmarks/gpu_check.py [--out DIR] [--budget-s 290]

and a CPU smoke run of the script itself (seconds):

    python benchmarks/gpu_check.py --cpu --tiny --out /tmp/gpu-check

Sections, each under its own time limit (SIGALRM) and a watchdog that ends the process if a
section hangs in native code; ``summary.json`` is rewritten after every section, so partial
results survive a timeout or a kill:

1. ``env``: device, driver, versions, NVML power limits and clocks;
2. ``ceilings``: large bf16 matmul TFLOP/s (8192^3, repeated) and device-to-device copy
   bandwidth (a 4 GiB ``copy_``, read + write bytes counted), with board power;
3. ``native-<model>``: the reduced sweep of the model's TP-8 shard with splitbench-native
   (CUDA graphs), every layer if the weights fit with room for the KV cache, else a subset
   (times scaled);
4. ``transformers-<model>``: a shorter sweep with transformers' modeling code, if time allows.

Printed at the end (and in ``summary.json``): decode at batch 1 as achieved HBM bandwidth
(weights + KV bytes per step / step time) over the copy ceiling (target >= 80 %); prefill at
>= 2,048 tokens as achieved TFLOP/s (matmul + attention FLOPs) over the matmul ceiling (target
>= 70 %); joules per token of each phase (per GPU and per TP-8 instance).
Profiles go to ``<out>/<model>-tp8-<impl>-<gpu>-<sweep>/profiles.csv`` (contract 2).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from common.atomic import write_json_atomic  # noqa: E402
from common.units import (  # noqa: E402
    MIB,
    bytes_per_s_to_tbps,
    bytes_to_gib,
    flops_to_tflops,
    s_to_ms,
)

DECODE_TARGET = 0.80
PREFILL_TARGET = 0.70
REDUCED = {
    "prefill": [{"batch": [1], "prompt": [512, 2048, 4096]}, {"batch": [4], "prompt": [512]}],
    "decode": [{"batch": [1, 8, 32], "context": [512, 2048]}],
}
HF_QUICK = {
    "prefill": [{"batch": [1], "prompt": [2048]}],
    "decode": [{"batch": [1], "context": [512]}, {"batch": [8], "context": [2048]}],
}
TINY = {
    "prefill": [{"batch": [1], "prompt": [16, 64]}],
    "decode": [{"batch": [1, 4], "context": [16, 64]}],
}


class SectionTimeout(BaseException):  # not caught by generic `except Exception`
    """A section ran past its time limit."""


def _atomic_json(path: Path, data: dict) -> None:
    write_json_atomic(path, data)


def _jsonable(x):
    if isinstance(x, float) and math.isnan(x):
        return None
    return str(x)


def _clean(x):
    """NaN -> None, recursively (strict JSON)."""
    if isinstance(x, float):
        return None if math.isnan(x) or math.isinf(x) else x
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    return x


class Check:
    """Sections with time limits, a hard watchdog, and a summary written as it goes."""

    def __init__(self, out: Path, budget_s: float, grace_s: float = 20.0):
        self.out = out
        self.t0 = time.monotonic()
        self.deadline = self.t0 + budget_s
        self.grace_s = grace_s
        self.summary: dict = {"status": "running", "budget_s": budget_s, "sections": {}}
        self.archive: Path | None = None
        self._armed: tuple[str, float] | None = None
        self._lock = threading.Lock()
        threading.Thread(target=self._watch, daemon=True, name="gpu-check-watchdog").start()

    def pack(self) -> None:
        """Copy summary.json and a .tar.gz of the output folder next to ``self.archive``."""
        if not self.archive:
            return
        import shutil
        import tarfile

        dest = Path(self.archive)
        dest.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(dest, "w:gz") as tar:
            tar.add(self.out, arcname=self.out.name)
        if (self.out / "summary.json").is_file():
            shutil.copyfile(self.out / "summary.json", dest.parent / "summary.json")

    def write(self) -> None:
        self.summary["elapsed_s"] = round(time.monotonic() - self.t0, 2)
        _atomic_json(self.out / "summary.json", _clean(self.summary))

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def _watch(self) -> None:
        while True:
            time.sleep(1.0)
            with self._lock:
                armed = self._armed
            if armed and time.monotonic() > armed[1]:
                name = armed[0]
                self.summary["sections"].setdefault(name, {})["status"] = "hung"
                self.summary["status"] = f"aborted: section '{name}' hung past its limit"
                with contextlib.suppress(Exception):
                    self.write()
                print(
                    f"\nerror: section '{name}' hung past its limit; partial results in "
                    f"{self.out}/summary.json",
                    file=sys.stderr,
                    flush=True,
                )
                with contextlib.suppress(Exception):
                    self.pack()
                os._exit(3)

    def section(self, name: str, limit_s: float, fn, min_s: float = 5.0):
        """Run ``fn()`` under min(limit_s, time left); record status, result, error."""
        limit = min(limit_s, self.remaining())
        rec = self.summary["sections"].setdefault(name, {})
        if limit < min_s:
            rec.update(status="skipped", reason=f"no time left ({limit:.0f} s)")
            self.write()
            print(f"[{name}] skipped: no time left", flush=True)
            return None
        rec.update(status="running", limit_s=round(limit, 1))
        self.write()
        print(f"[{name}] start (limit {limit:.0f} s)", flush=True)
        start = time.monotonic()

        def on_alarm(signum, frame):
            raise SectionTimeout(f"section '{name}' ran past {limit:.0f} s")

        old = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, limit)
        with self._lock:
            self._armed = (name, time.monotonic() + limit + self.grace_s)
        result = None
        try:
            result = fn()
            rec["status"] = "ok"
        except SectionTimeout as e:
            rec.update(status="timeout", error=str(e))
        except Exception as e:  # noqa: BLE001 - every failure is recorded; later sections go on
            rec.update(
                status="error",
                error=f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
            )
            rec["traceback"] = traceback.format_exc(limit=6)[-2000:]
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
            with self._lock:
                self._armed = None
        rec["elapsed_s"] = round(time.monotonic() - start, 2)
        if result is not None:
            rec["result"] = result
        self.write()
        msg = rec.get("error", "")
        print(f"[{name}] {rec['status']} in {rec['elapsed_s']:.1f} s {msg}", flush=True)
        return result


# ----------------------------------------------------------------------------- sections


def env_info(device: str) -> dict:
    import torch

    from characterize.measure.power import make_backend
    from characterize.measure.profiler import gpu_key, versions

    info = {"versions": versions(), "device": device}
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        info.update(
            name=props.name,
            memory_gib=round(bytes_to_gib(props.total_memory), 1),
            sms=props.multi_processor_count,
            gpu=gpu_key(props.name),
        )
        free, total = torch.cuda.mem_get_info()
        info["free_gib"] = round(bytes_to_gib(free), 1)
        backend = make_backend("auto")
        info["power_backend"] = backend.name
        info["power_note"] = backend.reason
        if backend.available:
            info["nvml"] = backend.device_info(0)
            info["gpu"] = gpu_key(info["nvml"].get("nvml_name") or props.name)
        backend.close()
    else:
        info["gpu"] = "cpu"
    return info


def ceilings(device: str, tiny: bool, min_window_s: float) -> dict:
    """Matmul TFLOP/s and copy bandwidth, measured in the same run, with power."""
    import torch

    from characterize.measure.power import PowerMonitor, make_backend

    cuda = device == "cuda"
    dtype = torch.bfloat16 if cuda else torch.float32
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    backend = make_backend("auto")
    monitor = PowerMonitor(backend, [0], sample_hz=50, sync=sync)
    out: dict = {}

    def timed(op, name: str, work: float) -> dict:
        for _ in range(3):
            op()
        sync()
        t = time.perf_counter()
        op()
        sync()
        one = max(time.perf_counter() - t, 1e-7)
        n = max(5, min(2000, math.ceil(min_window_s / one)))
        monitor.begin_window(name)
        t = time.perf_counter()
        for _ in range(n):
            op()
        sync()
        dt = (time.perf_counter() - t) / n
        m = monitor.end_window(name)
        return {
            "per_op_s": dt,
            "rate": work / dt,
            "repeats": n,
            "gpu_power_w": m.mean_power_w,
            "gpu_max_power_w": m.max_power_w,
            "sm_clock_mhz": m.sm_clock_mhz,
            "energy_source": m.energy_source,
        }

    def matmul() -> dict:
        n = 256 if tiny else 8192
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        c = torch.empty(n, n, device=device, dtype=dtype)
        r = timed(lambda: torch.matmul(a, b, out=c), "matmul", 2.0 * n**3)
        return {"n": n, "dtype": str(dtype), "tflops": flops_to_tflops(r["rate"]), **r}

    def copy() -> dict:
        nbytes = (16 if tiny else 4096) * MIB
        src = torch.empty(nbytes // 2, device=device, dtype=torch.bfloat16).fill_(1.0)
        dst = torch.empty_like(src)
        r = timed(lambda: dst.copy_(src), "copy", 2.0 * nbytes)
        return {
            "buffer_bytes": nbytes,
            "tb_per_s": bytes_per_s_to_tbps(r["rate"]),
            "bytes_counted": "read + write",
            **r,
        }

    try:
        out["matmul"] = matmul()
        out["copy"] = copy()
    finally:
        monitor.close()
        backend.close()
        if cuda:
            torch.cuda.empty_cache()
    return out


def pick_layers(model: str, tp: int, device: str, reserve_gib: float) -> int | None:
    """None (every layer) if the shard's weights fit with ``reserve_gib`` left, else a subset."""
    if device != "cuda":
        return None
    import torch

    from characterize.measure.models import ShardSpec, resolve_model

    shard = ShardSpec(resolve_model(model), tp=tp)
    free, _ = torch.cuda.mem_get_info()
    room = free - reserve_gib * 2**30 - shard.lm_head_params * 2 * 2
    per_layer = shard.layer_params * 2
    if shard.num_layers * per_layer <= room:
        return None
    return max(1, int(room // per_layer))


def profile(
    model: str,
    impl: str,
    args,
    layers: int | None,
    grids: dict,
    sweep_name: str,
    progress: bool,
    compile_mode: str | None = None,
) -> dict:
    """Profile one (model, impl): returns the run's headline numbers."""
    import pandas as pd

    from characterize.measure.profiler import ProfileConfig, SweepSpec, TimingOptions, profile_phase

    tp = 2 if args.tiny else 8
    timing = (
        TimingOptions(warmup=1, repeats=3, min_window_s=0.002, max_point_s=1.0)
        if args.cpu
        else TimingOptions(warmup=2, repeats=3, min_window_s=args.min_window_s, max_point_s=8.0)
    )
    cfg = ProfileConfig(
        model=model,
        sweep=SweepSpec.from_grids(sweep_name, grids["prefill"], grids["decode"]),
        tp=tp,
        layers=layers,
        impl=impl,
        device="cpu" if args.cpu else "cuda",
        power="auto",
        timing=timing,
        out_dir=str(args.out),
        compile_mode=compile_mode,
        run_name=f"{model}-tp{tp}-{impl}-{gpu_tag(args)}-{sweep_name}",
        progress=progress,
        resume=False,
    )
    run = profile_phase(cfg, log=lambda s: print("  " + s, flush=True))
    det = run.details
    rows = run.profiles
    res: dict = {
        "run_dir": str(run.run_dir),
        "layers_run": run.metadata["shard"]["layers_run"],
        "num_layers": run.metadata["shard"]["num_layers"],
        "engine": run.metadata["engine"],
        "notes": run.metadata.get("engine_notes", []),
        "points": len(rows),
        "infeasible": len(run.infeasible),
        "infeasible_points": [
            f"{r.phase} b{r.batch_size} x{r.tokens_per_request}: {r.reason}"
            for r in run.infeasible.itertuples()
        ],
    }
    merged = (
        det.merge(
            rows[["phase", "batch_size", "tokens_per_request", "energy_j", "power_w"]],
            on=["phase", "batch_size", "tokens_per_request"],
            how="left",
        )
        if len(det)
        else pd.DataFrame()
    )
    dec = []
    pre = []
    for r in merged.itertuples(index=False):
        e_inst = r.energy_j
        if r.phase == "decode":
            dec.append(
                {
                    "batch": int(r.batch_size),
                    "context": int(r.tokens_per_request),
                    "step_ms": s_to_ms(r.raw_latency_s),
                    "tb_per_s": bytes_per_s_to_tbps(r.achieved_bytes_per_s),
                    "gpu_power_w": r.gpu_power_w,
                    "j_per_token_gpu": e_inst / tp / r.batch_size,
                    "j_per_token_instance": e_inst / r.batch_size,
                    "mode": r.mode,
                }
            )
        else:
            tokens = int(r.batch_size * r.tokens_per_request)
            pre.append(
                {
                    "batch": int(r.batch_size),
                    "prompt": int(r.tokens_per_request),
                    "ms": s_to_ms(r.raw_latency_s),
                    "tflops": flops_to_tflops(r.achieved_flops),
                    "gpu_power_w": r.gpu_power_w,
                    "j_per_token_gpu": e_inst / tp / tokens,
                    "j_per_token_instance": e_inst / tokens,
                    "mode": r.mode,
                }
            )
    res["decode"] = dec
    res["prefill"] = pre
    return res


def judge(summary: dict, min_prefill_tokens: int = 2048) -> list[str]:
    """Headline lines: decode b=1 vs copy ceiling, prefill >= 2048 tokens vs matmul ceiling."""
    ceil = (summary["sections"].get("ceilings") or {}).get("result") or {}
    copy_tb = (ceil.get("copy") or {}).get("tb_per_s")
    mm_tf = (ceil.get("matmul") or {}).get("tflops")
    lines = []
    if copy_tb and mm_tf:
        lines.append(f"ceilings: matmul {mm_tf:.1f} TFLOP/s, copy {copy_tb:.3f} TB/s (read+write)")
    verdicts = {}
    for name, sec in summary["sections"].items():
        res = sec.get("result")
        if not isinstance(res, dict) or "decode" not in res:
            continue
        layers = f"layers {res['layers_run']}/{res['num_layers']}"
        lines.append(
            f"{name}: {res['engine']}, {layers}, {res['points']} points, "
            f"{res['infeasible']} infeasible"
        )
        for d in res["decode"]:
            if d["batch"] != 1:
                continue
            frac = d["tb_per_s"] / copy_tb if copy_tb else math.nan
            ok = frac >= DECODE_TARGET
            verdicts.setdefault(name, []).append(ok)
            lines.append(
                f"  decode b=1 ctx {d['context']}: {d['step_ms']:.2f} ms/step, "
                f"{d['tb_per_s']:.3f} TB/s = {frac:.0%} of copy ceiling "
                f"[{'PASS' if ok else 'below'} {DECODE_TARGET:.0%}], "
                f"{_f(d['j_per_token_gpu'])} J/token/GPU, {_f(d['j_per_token_instance'])} J/token/instance"
            )
        for p in res["prefill"]:
            tokens = p["batch"] * p["prompt"]
            if tokens < min_prefill_tokens:
                continue
            frac = p["tflops"] / mm_tf if mm_tf else math.nan
            ok = frac >= PREFILL_TARGET
            verdicts.setdefault(name, []).append(ok)
            lines.append(
                f"  prefill {p['batch']}x{p['prompt']}: {p['ms']:.1f} ms, {p['tflops']:.1f} TFLOP/s "
                f"= {frac:.0%} of matmul ceiling [{'PASS' if ok else 'below'} {PREFILL_TARGET:.0%}], "
                f"{_f(p['j_per_token_gpu'], '.4f')} J/token/GPU, "
                f"{_f(p['j_per_token_instance'], '.4f')} J/token/instance"
            )
        for d in res["decode"]:
            if d["batch"] != 1:
                lines.append(
                    f"  decode b={d['batch']} ctx {d['context']}: {d['step_ms']:.2f} ms/step, "
                    f"{d['tb_per_s']:.3f} TB/s, {_f(d['j_per_token_instance'])} J/token/instance"
                )
        for n in res.get("notes", []):
            lines.append(f"  note: {n}")
    summary["targets"] = {k: all(v) for k, v in verdicts.items()}
    return lines


def _f(x, spec: str = ".3f") -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default results/profiles/gpu-check-<gpu>)",
    )
    p.add_argument("--budget-s", type=float, default=290.0, help="total time budget in seconds")
    p.add_argument("--cpu", action="store_true", help="run on the CPU (smoke test of the script)")
    p.add_argument("--tiny", action="store_true", help="tiny test models instead of the real ones")
    p.add_argument("--models", default=None, help="comma list (default llama2-70b,bloom-176b)")
    p.add_argument("--impls", default="native,transformers", help="comma list, in order")
    p.add_argument("--layers", type=int, default=None, help="force a layer subset (default: auto)")
    p.add_argument(
        "--reserve-gib", type=float, default=14.0, help="GiB kept free for KV and activations"
    )
    p.add_argument(
        "--min-window-s", type=float, default=0.3, help="s: power window per point (GPU)"
    )
    p.add_argument(
        "--compile-mode", default=None, help="native sections: torch.compile mode per layer"
    )
    p.add_argument(
        "--compile-section",
        default="default",
        help="torch.compile mode of the extra last section (decode b=1, first model); "
        "'' to skip it",
    )
    p.add_argument("--progress", action="store_true", help="show progress bars")
    p.add_argument(
        "--archive",
        type=Path,
        default=None,
        help="also write the output folder as this .tar.gz, with summary.json beside it "
        "(few files: e.g. $OUT/gpu-check.tgz on a device machine)",
    )
    args = p.parse_args(argv)

    import torch

    if not args.cpu and not torch.cuda.is_available():
        print("error: no CUDA GPU visible (use --cpu --tiny for a smoke run)", file=sys.stderr)
        return 2
    if args.cpu:
        torch.set_num_threads(1)
    device = "cpu" if args.cpu else "cuda"
    models = (
        args.models.split(",")
        if args.models
        else (["tiny-llama", "tiny-bloom"] if args.tiny else ["llama2-70b", "bloom-176b"])
    )
    impls = [i for i in args.impls.split(",") if i]
    if args.out is None:
        from characterize.measure.profiler import gpu_key

        tag = "cpu" if args.cpu else gpu_key(torch.cuda.get_device_name(0))
        args.out = ROOT / "results" / "profiles" / f"gpu-check-{tag}"
    args.out.mkdir(parents=True, exist_ok=True)
    check = Check(args.out, args.budget_s)
    check.archive = args.archive
    check.summary["args"] = {k: str(v) for k, v in vars(args).items()}
    scale = 0.1 if args.cpu else 1.0
    interrupted = False
    try:
        env = check.section("env", 30 * scale + 5, lambda: env_info(device))
        if env:
            check.summary["gpu"] = env.get("gpu")
        check.section(
            "ceilings",
            40 * scale + 5,
            lambda: ceilings(device, args.tiny, 0.002 if args.cpu else 1.0),
        )
        plan = []  # (section, impl, model, grids, sweep name, limit s, compile mode)
        for impl in impls:
            native = impl == "native"
            for model in models:
                grids = TINY if args.tiny else (REDUCED if native else HF_QUICK)
                name = "tiny" if args.tiny else ("reduced" if native else "hf-quick")
                mode = args.compile_mode if native else None
                plan.append(
                    (f"{impl}-{model}", impl, model, grids, name, 80 if native else 45, mode)
                )
        if args.compile_section and not args.cpu and "native" in impls:
            # extra: torch.compile'd layers inside the graph, decode batch 1 only (one compile)
            grids = {"prefill": [], "decode": [{"batch": [1], "context": [512]}]}
            plan.append(
                (
                    f"native-compile-{models[0]}",
                    "native",
                    models[0],
                    grids,
                    "compile-b1",
                    120,
                    args.compile_section,
                )
            )
        for section, impl, model, grids, sweep_name, limit, mode in plan:

            def work(model=model, impl=impl, grids=grids, sweep_name=sweep_name, mode=mode):
                tp = 2 if args.tiny else 8
                layers = (
                    args.layers
                    if args.layers is not None
                    else pick_layers(model, tp, device, args.reserve_gib)
                )
                return profile(model, impl, args, layers, grids, sweep_name, args.progress, mode)

            check.section(section, limit * scale + 5, work, min_s=2.0 if args.cpu else 20.0)
            _free_cuda()
    except KeyboardInterrupt:
        interrupted = True
        check.summary["status"] = "interrupted"
    lines = judge(check.summary, 64 if args.tiny else 2048)
    statuses = [s.get("status") for s in check.summary["sections"].values()]
    if not interrupted:
        check.summary["status"] = "ok" if all(s == "ok" for s in statuses) else "partial"
    check.summary["headline"] = lines
    check.write()
    check.pack()
    print("\n=== gpu check summary ===")
    for line in lines:
        print(line)
    for name, sec in check.summary["sections"].items():
        print(
            f"section {name}: {sec.get('status')} ({sec.get('elapsed_s', 0)} s) {sec.get('error', '')}"
        )
    print(f"status: {check.summary['status']}; files: {args.out}")
    return 130 if interrupted else (0 if check.summary["status"] == "ok" else 1)


def gpu_tag(args) -> str:
    """The gpu key of the run (cpu with --cpu)."""
    if args.cpu:
        return "cpu"
    import torch

    from characterize.measure.profiler import gpu_key

    return gpu_key(torch.cuda.get_device_name(0))


def _free_cuda() -> None:
    import gc

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        with contextlib.suppress(RuntimeError):  # best effort: never end the run between sections
            torch.cuda.empty_cache()


if __name__ == "__main__":
    sys.exit(main())
