"""Phase profiler: time (and power) of prefill and decode iterations of one TP shard.

``profile_phase(config)`` sweeps

- prefill over (batch, prompt tokens): one prefill iteration of the whole batch;
- decode over (batch, context held): the static KV cache is filled to ``context`` tokens per
  request, then one decode step (one new token per request) is timed, replayed from a CUDA
  graph on GPU (the same code path without graphs on CPU);

with warm-up, then the op repeated until the window lasts at least ``min_window_s`` (so the
NVML energy reading is stable) and at least ``repeats`` times. Each repetition is timed with CUDA
events on GPU (``time.perf_counter`` on CPU); rows carry the median and the standard deviation.

Output (``config.out_dir / config.run_name``), rewritten atomically after every point, so a
killed run keeps its points and a rerun skips them (resume):

- ``profiles.csv``: contract 2 rows (``PROFILE_COLUMNS``), measured points only (latency > 0);
  ``tp`` is the shard's k, ``gpu`` the GPU spec matched from the device name (``cpu`` on CPU);
  ``power_w`` / ``energy_j`` are for the whole TP instance: one GPU's measured power x tp
  (every GPU of the instance runs the same shard), ``energy_j = power_w x latency_s``;
  times of a layer subset are scaled by ``num_layers / layers`` (said in ``source``);
- ``infeasible.csv``: points that did not run (out of memory, pre-checked KV bytes vs free
  memory, beyond the time limit): the contract-2 key columns plus ``reason`` and ``source``;
- ``details.csv``: per-point diagnostics (raw time, window, energy source, clocks, bytes and
  FLOPs, achieved bandwidth / FLOP/s);
- ``profiles.meta.json``: device, driver, software versions, power limits, clocks, date, config.
"""

from __future__ import annotations

import datetime as _dt
import math
import platform
import re
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from characterize.measure.models import ShardSpec, resolve_model
from characterize.measure.power import (
    PowerMonitor,
    make_backend,
    power_cap,
)
from characterize.modeling.profiles import PROFILE_COLUMNS, metadata_path
from characterize.modeling.specs import list_specs, load_gpu
from common.atomic import write_json_atomic, write_text_atomic
from common.units import ms_to_s

KEY_COLUMNS = ["model", "gpu", "tp", "phase", "batch_size", "tokens_per_request"]
INFEASIBLE_COLUMNS = [*KEY_COLUMNS, "reason", "source"]
DETAIL_COLUMNS = [
    *KEY_COLUMNS,
    "raw_latency_s",
    "layer_scale",
    "repeats",
    "window_s",
    "energy_source",
    "gpu_power_w",
    "gpu_max_power_w",
    "sm_clock_mhz",
    "temperature_c",
    "power_samples",
    "bytes",
    "flops",
    "achieved_bytes_per_s",
    "achieved_flops",
    "mode",
]


class ProfilerError(ValueError):
    """Bad profiler configuration (one-line message naming the field)."""


# ----------------------------------------------------------------------------- config


def _grid_points(grids: Iterable[dict], tokens_key: str, where: str) -> list[tuple[int, int]]:
    points: list[tuple[int, int]] = []
    for i, g in enumerate(grids):
        if not isinstance(g, dict) or "batch" not in g or tokens_key not in g:
            raise ProfilerError(f"{where}[{i}]: needs 'batch' and '{tokens_key}' lists")
        batches = g["batch"] if isinstance(g["batch"], list | tuple) else [g["batch"]]
        tokens = g[tokens_key] if isinstance(g[tokens_key], list | tuple) else [g[tokens_key]]
        for b in batches:
            for t in tokens:
                if not (isinstance(b, int) and isinstance(t, int)) or b < 1 or t < 1:
                    raise ProfilerError(
                        f"{where}[{i}]: batch and {tokens_key} must be integers >= 1, got {b}, {t}"
                    )
                if (b, t) not in points:
                    points.append((b, t))
    return points


@dataclass(frozen=True)
class SweepSpec:
    """Points of a sweep: (batch, prompt tokens) for prefill, (batch, context) for decode."""

    name: str
    prefill: tuple[tuple[int, int], ...] = ()
    decode: tuple[tuple[int, int], ...] = ()

    @classmethod
    def from_grids(cls, name: str, prefill: Iterable[dict], decode: Iterable[dict]) -> SweepSpec:
        """Union of cartesian grids, e.g. ``prefill=[{"batch": [1], "prompt": [128, 256]}]``,
        ``decode=[{"batch": [1, 8], "context": [512]}]`` (order kept, duplicates dropped)."""
        return cls(
            name=name,
            prefill=tuple(_grid_points(prefill, "prompt", f"sweep '{name}' prefill")),
            decode=tuple(_grid_points(decode, "context", f"sweep '{name}' decode")),
        )

    def points(self) -> list[tuple[str, int, int]]:
        return [("prefill", b, t) for b, t in self.prefill] + [
            ("decode", b, t) for b, t in self.decode
        ]

    @property
    def max_positions(self) -> int:
        """Positions a model must hold for every point (prompt, or context + 1)."""
        return max([t for _, t in self.prefill] + [t + 1 for _, t in self.decode] + [1])


@dataclass(frozen=True)
class TimingOptions:
    """Warm-up and repeat policy of every point (seconds)."""

    warmup: int = 2
    repeats: int = 5
    min_window_s: float = 0.5
    max_repeats: int = 5000
    max_point_s: float = 60.0

    def __post_init__(self) -> None:
        if self.warmup < 0 or self.repeats < 1 or self.max_repeats < self.repeats:
            raise ProfilerError(
                "timing: need warmup >= 0, repeats >= 1, max_repeats >= repeats; got "
                f"{self.warmup}, {self.repeats}, {self.max_repeats}"
            )
        if self.min_window_s < 0 or self.max_point_s <= 0:
            raise ProfilerError("timing: need min_window_s >= 0 and max_point_s > 0")


@dataclass(frozen=True)
class ProfileConfig:
    """Everything one profiling run needs (plain typed values; Hydra builds it in experiments)."""

    model: str
    sweep: SweepSpec
    tp: int = 8
    layers: int | None = None
    impl: str = "native"
    device: str = "cuda"
    dtype: str = "auto"
    cuda_graphs: bool = True
    compile_mode: str | None = None
    power: str = "auto"
    sample_hz: float = 50.0
    power_cap_w: float | None = None
    allow_power_cap: bool = False
    gpu_label: str | None = None  # override the detected gpu key (e.g. h100-80gb-pcap)
    seed: int = 0
    timing: TimingOptions = field(default_factory=TimingOptions)
    out_dir: str = "results/profiles"
    run_name: str | None = None
    progress: bool = True
    resume: bool = True

    def shard(self) -> ShardSpec:
        return ShardSpec(resolve_model(self.model), tp=self.tp, layers=self.layers)


@dataclass
class ProfileRun:
    """What a run produced: tables and the files they went to."""

    run_dir: Path
    profiles: pd.DataFrame
    infeasible: pd.DataFrame
    details: pd.DataFrame
    metadata: dict
    skipped: int = 0

    @property
    def csv_path(self) -> Path:
        return self.run_dir / "profiles.csv"


# ----------------------------------------------------------------------------- helpers


def gpu_key(device_name: str | None) -> str:
    """The GPU spec name whose ``nvml_names`` occur in ``device_name``; else a slug of it."""
    if not device_name:
        return "cpu"
    low = device_name.lower()
    for name in list_specs("gpus"):
        spec = load_gpu(name)
        if any(n.lower() in low for n in spec.nvml_names):
            return name
    slug = re.sub(r"[^a-z0-9]+", "-", low.replace("nvidia", "")).strip("-")
    return slug or "unknown-gpu"


def write_table(df: pd.DataFrame, path: Path) -> None:
    """Write a CSV atomically (fixed float format: same values -> same bytes)."""
    write_text_atomic(path, df.to_csv(index=False, lineterminator="\n", float_format="%.9g"))


def write_json(data: dict, path: Path) -> None:
    write_json_atomic(path, data)


def _read_existing(path: Path, columns: list[str]) -> pd.DataFrame:
    if not path.is_file():
        return pd.DataFrame(columns=columns)
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise ProfilerError(f"{path}: cannot resume from an unreadable CSV: {e}") from None
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ProfilerError(f"{path}: cannot resume: column '{missing[0]}' missing")
    return df[columns]


def _keys(df: pd.DataFrame) -> set[tuple]:
    return {
        (
            str(r.model),
            str(r.gpu),
            int(r.tp),
            str(r.phase),
            int(r.batch_size),
            int(r.tokens_per_request),
        )
        for r in df[KEY_COLUMNS].itertuples(index=False)
    }


def _is_oom(exc: BaseException) -> bool:
    try:
        import torch

        if isinstance(exc, torch.cuda.OutOfMemoryError):
            return True
    except (ImportError, AttributeError):
        pass
    return isinstance(exc, RuntimeError | MemoryError) and "out of memory" in str(exc).lower()


def versions() -> dict:
    """Software versions of the measuring stack (from package metadata: no heavy imports)."""
    from importlib import metadata

    out = {"python": platform.python_version()}
    for key, dist in (
        ("torch", "torch"),
        ("transformers", "transformers"),
        ("nvidia-ml-py", "nvidia-ml-py"),
    ):
        try:
            out[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[key] = None
    try:
        import torch

        out["torch"] = torch.__version__
        out["cuda"] = torch.version.cuda
    except ImportError:
        pass
    return out


# ----------------------------------------------------------------------------- timing


@dataclass
class PointTiming:
    latencies_s: list[float]
    measurement: object  # characterize.measure.power.Measurement

    @property
    def median_s(self) -> float:
        return float(statistics.median(self.latencies_s))

    @property
    def std_s(self) -> float:
        return float(statistics.stdev(self.latencies_s)) if len(self.latencies_s) > 1 else 0.0


def time_op(
    op: Callable[[], None],
    sync: Callable[[], None],
    monitor: PowerMonitor,
    timing: TimingOptions,
    use_cuda_events: bool,
    name: str = "point",
) -> PointTiming:
    """Warm ``op`` up, pick a repeat count filling ``min_window_s``, time each repetition
    inside one power window. Times in seconds."""
    for _ in range(timing.warmup):
        op()
    sync()
    t0 = time.perf_counter()
    op()
    sync()
    one = max(time.perf_counter() - t0, 1e-7)
    n = max(timing.repeats, math.ceil(timing.min_window_s / one))
    n = min(n, timing.max_repeats, max(timing.repeats, int(timing.max_point_s / one)))
    if use_cuda_events:
        import torch

        events = [
            (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
            for _ in range(n)
        ]
        monitor.begin_window(name)
        for start, end in events:
            start.record()
            op()
            end.record()
        m = monitor.end_window(name)  # synchronizes
        lat = [ms_to_s(s.elapsed_time(e)) for s, e in events]
    else:
        lat = []
        monitor.begin_window(name)
        for _ in range(n):
            t = time.perf_counter()
            op()
            lat.append(time.perf_counter() - t)
        m = monitor.end_window(name)
    return PointTiming(lat, m)


# ----------------------------------------------------------------------------- the sweep


def _device_facts(device: str, backend) -> tuple[str | None, dict]:
    """(device name, facts) of the measuring device."""
    facts: dict = {"device": device}
    if device.startswith("cuda"):
        import torch

        idx = torch.device(device).index or 0
        props = torch.cuda.get_device_properties(idx)
        facts.update(
            torch_device_name=props.name,
            memory_bytes=int(props.total_memory),
            sm_count=int(props.multi_processor_count),
        )
        if backend.available:
            facts.update(backend.device_info(idx))
        return facts.get("nvml_name") or props.name, facts
    facts["cpu"] = platform.processor() or platform.machine()
    return None, facts


def profile_phase(
    config: ProfileConfig,
    *,
    engine=None,
    backend=None,
    log: Callable[[str], None] | None = None,
) -> ProfileRun:
    """Run the sweep of ``config`` (see module doc); return the tables written to disk.

    ``engine`` (a :class:`characterize.measure.models.engine.Engine`) may be passed in to reuse a built
    model; ``backend`` overrides ``make_backend(config.power)``.
    """
    from characterize.measure.models.engine import Engine, EngineOptions

    log = log or (lambda s: None)
    shard = config.shard()
    backend = backend if backend is not None else make_backend(config.power)
    device_name, device_facts = _device_facts(config.device, backend)
    gpu = config.gpu_label or gpu_key(device_name)
    run_name = (
        config.run_name
        or f"{shard.model.name}-tp{config.tp}-{config.impl}-{gpu}-{config.sweep.name}"
    )
    run_dir = Path(config.out_dir) / run_name
    paths = {
        "profiles": run_dir / "profiles.csv",
        "infeasible": run_dir / "infeasible.csv",
        "details": run_dir / "details.csv",
    }
    if config.resume:
        rows = _read_existing(paths["profiles"], PROFILE_COLUMNS)
        bad = _read_existing(paths["infeasible"], INFEASIBLE_COLUMNS)
        det = _read_existing(paths["details"], DETAIL_COLUMNS)
    else:
        rows = pd.DataFrame(columns=PROFILE_COLUMNS)
        bad = pd.DataFrame(columns=INFEASIBLE_COLUMNS)
        det = pd.DataFrame(columns=DETAIL_COLUMNS)
    done = _keys(rows) | _keys(bad)
    todo = [
        p
        for p in config.sweep.points()
        if (shard.model.name, gpu, config.tp, p[0], p[1], p[2]) not in done
    ]
    skipped = len(config.sweep.points()) - len(todo)
    if skipped:
        log(f"resume: {skipped} point(s) already in {run_dir}, {len(todo)} to go")

    own_engine = engine is None
    if engine is None:
        options = EngineOptions(
            impl=config.impl,
            device=config.device,
            dtype=config.dtype,
            cuda_graphs=config.cuda_graphs,
            compile_mode=config.compile_mode,
            seed=config.seed,
            max_positions=config.sweep.max_positions,
        )
        engine = Engine(shard, options)
    monitor = PowerMonitor(
        backend,
        gpu_indices=[torch_index(config.device)],
        sample_hz=config.sample_hz,
        sync=engine.sync,
    )
    vers = versions()
    es = engine.dtype.itemsize if hasattr(engine.dtype, "itemsize") else 2

    def source() -> str:
        parts = [
            f"{gpu} ({device_name})" if device_name else config.device,
            engine.describe(),
            f"torch {vers.get('torch')}",
            f"transformers {vers.get('transformers')}",
            shard.describe(),
        ]
        if backend.available and config.tp > 1:
            parts.append(f"power: 1 GPU x {config.tp}")
        if config.power_cap_w is not None:
            parts.append(f"power cap {config.power_cap_w:g} W")
        return "; ".join(parts)

    metadata = {
        "date_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "gpu": gpu,
        "device": device_facts,
        "versions": vers,
        "power_backend": backend.name,
        "power_note": getattr(backend, "reason", ""),
        "shard": {
            "model": shard.model.name,
            "tp": shard.tp,
            "layers_run": shard.num_layers,
            "num_layers": shard.model.num_layers,
            "layer_scale": shard.layer_scale,
            "heads": shard.num_heads,
            "kv_heads": shard.num_kv_heads,
            "ffn": shard.ffn_size,
            "vocab": shard.vocab_size,
            "weight_bytes": shard.weight_bytes(es),
        },
        "engine": engine.describe(),
        "config": _config_dict(config),
        "power_convention": "power_w, energy_j: whole TP instance = one GPU measured x tp",
    }

    def flush() -> None:
        write_table(rows[PROFILE_COLUMNS], paths["profiles"])
        write_table(bad[INFEASIBLE_COLUMNS], paths["infeasible"])
        write_table(det[DETAIL_COLUMNS], paths["details"])
        metadata["engine_notes"] = list(engine.notes)
        metadata["points"] = {"measured": len(rows), "infeasible": len(bad)}
        write_json(metadata, metadata_path(paths["profiles"]))

    def run_points() -> None:
        nonlocal rows, bad, det
        bar = _progress(todo, config.progress, f"{shard.model.name} tp{config.tp} {config.impl}")
        for phase, batch, tokens in bar:
            key = {
                "model": shard.model.name,
                "gpu": gpu,
                "tp": config.tp,
                "phase": phase,
                "batch_size": batch,
                "tokens_per_request": tokens,
            }
            reason = engine.check_fits(phase, batch, tokens)
            result = op = None
            if reason is None:
                try:
                    op = (
                        engine.prefill_op(batch, tokens)
                        if phase == "prefill"
                        else engine.decode_op(batch, tokens)
                    )
                    result = time_op(
                        op,
                        engine.sync,
                        monitor,
                        config.timing,
                        use_cuda_events=engine.is_cuda,
                        name=f"{phase}-{batch}-{tokens}",
                    )
                except Exception as e:
                    if not _is_oom(e):
                        raise
                    reason = "out of memory: " + (str(e).splitlines()[0][:120] if str(e) else "")
                finally:
                    op = None  # the callable holds the point's graph (or cache): drop it first
                    engine.release()
            if result is None:
                log(f"infeasible {phase} batch {batch} x {tokens}: {reason}")
                bad = _append(bad, {**key, "reason": reason, "source": source()})
                flush()
                continue
            m = result.measurement
            scale = shard.layer_scale
            latency = result.median_s * scale
            gpu_power = m.mean_power_w
            power = gpu_power * config.tp if not math.isnan(gpu_power) else math.nan
            row = {
                **key,
                "latency_s": latency,
                "power_w": power,
                "energy_j": power * latency if not math.isnan(power) else math.nan,
                "repeats": len(result.latencies_s),
                "latency_std_s": result.std_s * scale,
                "source": source(),
            }
            nbytes = shard.decode_bytes(batch, tokens, es) if phase == "decode" else math.nan
            flops = shard.prefill_flops(batch, tokens) if phase == "prefill" else math.nan
            raw = result.median_s
            detail = {
                **key,
                "raw_latency_s": raw,
                "layer_scale": scale,
                "repeats": len(result.latencies_s),
                "window_s": m.time_s,
                "energy_source": m.energy_source,
                "gpu_power_w": gpu_power,
                "gpu_max_power_w": m.max_power_w,
                "sm_clock_mhz": m.sm_clock_mhz,
                "temperature_c": m.temperature_c,
                "power_samples": m.samples,
                "bytes": nbytes,
                "flops": flops,
                "achieved_bytes_per_s": nbytes / raw if phase == "decode" else math.nan,
                "achieved_flops": flops / raw if phase == "prefill" else math.nan,
                "mode": engine.describe(),
            }
            rows = _append(rows, row)
            det = _append(det, detail)
            flush()

    try:
        flush()
        if config.power_cap_w is not None:
            with power_cap(
                backend,
                config.power_cap_w,
                allow=config.allow_power_cap,
                gpu_indices=[torch_index(config.device)],
            ):
                run_points()
        else:
            run_points()
        flush()
    finally:
        monitor.close()
        if own_engine:  # free the weights now (also on a timeout), not at some later gc
            engine.close()
    return ProfileRun(
        run_dir, rows[PROFILE_COLUMNS], bad[INFEASIBLE_COLUMNS], det, metadata, skipped
    )


def torch_index(device: str) -> int:
    """CUDA device index of ``device`` ('cuda' -> 0, 'cuda:1' -> 1; 0 on CPU)."""
    if ":" in device:
        try:
            return int(device.split(":", 1)[1])
        except ValueError:
            raise ProfilerError(f"device: cannot read an index from '{device}'") from None
    return 0


def _append(df: pd.DataFrame, row: dict) -> pd.DataFrame:
    new = pd.DataFrame([row], columns=df.columns)
    if df.empty:
        return new
    return pd.concat([df, new], ignore_index=True)


def _progress(items: Sequence, enabled: bool, desc: str):
    if not enabled:
        return items
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return items
    return tqdm(items, desc=desc, unit="pt", leave=False)


def _config_dict(config: ProfileConfig) -> dict:
    d = asdict(config)
    d["sweep"] = {
        "name": config.sweep.name,
        "prefill": [list(p) for p in config.sweep.prefill],
        "decode": [list(p) for p in config.sweep.decode],
    }
    return d
