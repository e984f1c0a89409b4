"""Hydra multiruns that survive a bad point: one record per job, one table per sweep.

Inside a multirun (``-m``) every job of every app runs through a guard
(the doors' ``experiments.apps._cli.guarded``): a job that fails (a bad value such as
``design.token_machines=-1``, or a crash) prints ONE line, is recorded as failed in its job
folder and RETURNS, so Hydra goes on with the other jobs (a ``SystemExit`` or exception would
abort the sweep: Hydra's sweeper re-raises a failed job's exception after its batch). Each job
writes ``job.json`` into its job folder: its overrides, ``status`` ("ok" or "failed"), the
one-line ``error`` and headline metrics.

:class:`SweepTable`, a Hydra callback (``hydra/callbacks=sweep_table``, on by default in the
apps' configs), reads those records at ``on_multirun_end`` and writes ``sweep.csv`` and
``sweep.json`` (one row per job) into the sweep folder and prints the table. When every job
failed the app exits with status 2. A job whose config cannot be composed (an unknown option,
``-m design=splitwise-hh,nope``), which would stop Hydra's sweep before any job ran, is left out
of the sweep and recorded as failed with its one line (:func:`leave_out_bad_jobs`).
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from common.atomic import write_json_atomic, write_text_atomic

JOB_FILE = "job.json"

#: the outcome of the last multirun in this process (read by the apps' exit status)
LAST_SWEEP: dict | None = None


def hydra_job() -> dict | None:
    """This job's multirun facts (``num``, ``overrides``, ``override_dirname``, ``dir``), or
    None outside a Hydra multirun job."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode
    except ImportError:  # pragma: no cover - hydra is a base dependency
        return None
    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    if hc.mode != RunMode.MULTIRUN:
        return None
    return {
        "num": int(hc.job.num),
        "overrides": list(hc.overrides.task),
        "override_dirname": str(hc.job.override_dirname),
        "dir": str(hc.runtime.output_dir),
    }


def job_dir() -> Path | None:
    """The Hydra run or job folder of this app (None outside a Hydra app)."""
    try:
        from hydra.core.hydra_config import HydraConfig
    except ImportError:  # pragma: no cover
        return None
    if not HydraConfig.initialized():
        return None
    out = HydraConfig.get().runtime.output_dir
    return Path(out) if out else None


def label_of(overrides: list[str], skip: tuple[str, ...] = ("experiment",)) -> str:
    """A folder-safe label naming a job by its overrides (``slo=strict,search.seed=1``);
    keys in ``skip`` (already in the study's name) and Hydra's own are left out."""
    parts = []
    for o in sorted(overrides):
        key = o.split("=", 1)[0].lstrip("+~")
        if key in skip or key.startswith("hydra"):
            continue
        parts.append(o.lstrip("+~"))
    text = ",".join(parts)
    for ch in '/\\:*?"<>| ':
        text = text.replace(ch, "_")
    return text[:150]


HEADLINE_KEYS = (
    "slo_met",
    "slo_worst_ratio",
    "throughput_rps",
    "goodput_rps",
    "energy_kwh",
    "cost_per_hour",
    "evaluated",
    "cache_hits",
    "errors",
    "points",
    "failed_points",
)


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    return value


def headline(ret: Any) -> tuple[str, str | None, dict]:
    """``(status, error, metrics)`` of a job's return value.

    Understands a study point record (``{"status", "result", "error"}``, also under
    ``"point"``), a study run (``{"meta": {"simulations": ...}}``) and a replay summary
    (a dict or dataclass with throughput, goodput and its ``slo`` verdict)."""
    ret = _plain(ret)
    if not isinstance(ret, dict):
        return "ok", None, {}
    if isinstance(ret.get("point"), dict):
        ret = ret["point"]
    metrics: dict = {}
    status, error = "ok", None
    if "result" in ret and "status" in ret:  # a point record
        if ret["status"] != "ok":
            status, error = "failed", ret.get("error")
        src = ret.get("result") or {}
    elif isinstance(ret.get("meta"), dict):  # a whole study
        src = dict(ret["meta"].get("simulations") or {})
        if ret.get("dir"):
            metrics["dir"] = str(ret["dir"])
    else:  # a replay summary
        src = dict(ret)
        slo = src.get("slo") or {}  # replay.summary: {name, ..., all_ok, worst_ratio}
        if isinstance(slo, dict) and "all_ok" in slo:
            src.setdefault("slo_met", slo["all_ok"])
            src.setdefault("slo_worst_ratio", slo.get("worst_ratio"))
        reqs = src.get("requests")
        if isinstance(reqs, dict) and "completed" in reqs:
            metrics["completed"] = reqs["completed"]
        design = src.get("design")
        if isinstance(design, dict) and "cost_per_hour" in design:
            src.setdefault("cost_per_hour", design["cost_per_hour"])
    for k in HEADLINE_KEYS:
        v = src.get(k)
        if isinstance(v, bool | int | str) or v is None:
            metrics[k] = v
        elif isinstance(v, float):
            metrics[k] = v if math.isfinite(v) else None
    return status, error, {k: v for k, v in metrics.items() if v is not None}


def write_job_record(job: dict, status: str, error: str | None, metrics: dict) -> Path:
    """``job.json`` in the job's folder (atomic)."""
    rec = {
        "num": job["num"],
        "overrides": job["overrides"],
        "status": status,
        "error": error,
        "metrics": metrics,
    }
    return write_json_atomic(Path(job["dir"]) / JOB_FILE, rec)


def collect(sweep_dir: Path) -> list[dict]:
    """The job records under ``sweep_dir``, by job number (unreadable ones skipped)."""
    rows = []
    for p in sorted(Path(sweep_dir).rglob(JOB_FILE)):
        try:
            rec = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(rec, dict) and "num" in rec:
            rec["dir"] = str(p.parent)
            rows.append(rec)
    return sorted(rows, key=lambda r: r["num"])


def table_rows(records: list[dict]) -> list[dict]:
    """One flat row per job: num, overrides, status, error, then the metrics."""
    keys: list[str] = []
    for r in records:
        for k in r.get("metrics") or {}:
            if k not in keys:
                keys.append(k)
    out = []
    for r in records:
        m = r.get("metrics") or {}
        out.append(
            {
                "job": r["num"],
                "overrides": " ".join(r.get("overrides") or []),
                "status": r.get("status"),
                "error": r.get("error") or "",
                **{k: m.get(k) for k in keys},
            }
        )
    return out


def write_table(sweep_dir: Path) -> dict:
    """Write ``sweep.csv`` and ``sweep.json`` into ``sweep_dir``; returns the sweep's outcome
    ``{"dir", "jobs", "failed", "rows"}``."""
    import csv
    import io

    rows = table_rows(collect(sweep_dir))
    buf = io.StringIO()
    if rows:
        fields = list(rows[0])
        w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in fields})
    sweep_dir = Path(sweep_dir)
    write_text_atomic(sweep_dir / "sweep.csv", buf.getvalue())
    write_json_atomic(sweep_dir / "sweep.json", rows)
    failed = sum(r["status"] != "ok" for r in rows)
    return {"dir": str(sweep_dir), "jobs": len(rows), "failed": failed, "rows": rows}


def print_table(outcome: dict, file=None) -> None:
    """The sweep table on the console: the overrides that differ between jobs, the status and
    the metrics (or the error); the overrides every job shares on one line above it."""
    file = file or sys.stdout
    rows = outcome["rows"]
    split = [set(r["overrides"].split()) for r in rows]
    common = set.intersection(*split) if split else set()
    keys = [k for k in (rows[0] if rows else {}) if k not in ("job", "overrides", "status")]
    keys = [k for k in keys if k not in ("error", "dir")]

    def fmt(v) -> str:
        return f"{v:.4g}" if isinstance(v, float) else ("-" if v in (None, "") else str(v))

    table = [["job", "overrides", "status", *keys]]
    for r in rows:
        own = " ".join(o for o in r["overrides"].split() if o not in common) or "-"
        tail = [fmt(r.get(k)) for k in keys] if r["status"] == "ok" else [r["error"]]
        table.append([str(r["job"]), own, r["status"], *tail])
    widths = [max(len(t[i]) for t in table) for i in range(3)]
    if common:
        print(f"sweep overrides of every job: {' '.join(sorted(common))}", file=file)
    metric_w = [
        max([len(k)] + [len(t[3 + j]) for t in table[1:] if len(t) == 3 + len(keys)])
        for j, k in enumerate(keys)
    ]
    for t in table:
        head = "  ".join(c.ljust(w) for c, w in zip(t[:3], widths, strict=True))
        if len(t) == 3 + len(keys):
            rest = "  ".join(c.rjust(w) for c, w in zip(t[3:], metric_w, strict=True))
        else:
            rest = "  ".join(t[3:])
        print(f"{head}  {rest}".rstrip(), file=file)
    print(
        f"sweep: {outcome['jobs']} jobs, {outcome['failed']} failed -> "
        f"{Path(outcome['dir']) / 'sweep.csv'}",
        file=file,
        flush=True,
    )


_BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


def leave_out_bad_jobs(config, sweep_dir: Path) -> list[dict]:
    """Keep a multirun going past jobs whose config cannot be composed (``-m
    design=splitwise-hh,nope``: no config ``design/nope``). Hydra's basic sweeper composes every
    job before running any and stops the whole sweep at the first such job; here each job is
    composed first, and a sweep value every job of which fails is left out of the sweep
    (``config.hydra.overrides.task``, which the sweeper reads next). Each left-out job prints
    ONE line and is recorded as failed in ``<sweep dir>/<num>/job.json`` (numbered after the
    jobs that run), so the sweep table lists it. When every job fails the table is written and
    the app exits with status 2 here. Returns the records of the jobs left out."""
    from omegaconf import OmegaConf, read_write

    if OmegaConf.select(config, "hydra.sweeper._target_") != _BASIC_SWEEPER:
        return []  # another sweeper (optuna, ...) composes and reports on its own
    if OmegaConf.select(config, "hydra.sweeper.params"):
        return []
    try:
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
        from hydra.core.global_hydra import GlobalHydra
        from hydra.core.override_parser.overrides_parser import OverridesParser

        loader = GlobalHydra.instance().config_loader()
        task = [str(o) for o in config.hydra.overrides.task]
        parsed = OverridesParser.create(config_loader=loader).parse_overrides(task)
        jobs = BasicSweeper.split_arguments(parsed, None)[0]
    except Exception:  # noqa: BLE001 - Hydra's sweeper reports what it cannot parse itself
        return []
    from experiments.config.compose import compose_error_line

    errors: dict[int, str] = {}
    for i, job in enumerate(jobs):
        try:
            loader.load_sweep_config(master_config=config, sweep_overrides=list(job))
        except Exception as e:  # noqa: BLE001 - every composition error is the job's
            errors[i] = compose_error_line(e)
    if not errors:
        return []
    new_task = _without_bad_values(parsed, jobs, errors) if len(errors) < len(jobs) else None
    bad = sorted(errors) if new_task is not None or len(errors) == len(jobs) else []
    if not bad:  # failures no sweep value explains: Hydra stops at the first, as before
        return []
    records = []
    first = len(jobs) - len(bad)
    for n, i in enumerate(bad, start=first):
        job = {"num": n, "overrides": list(jobs[i]), "dir": str(Path(sweep_dir) / str(n))}
        print(f"error: job {n} ({' '.join(jobs[i])}): {errors[i]}", file=sys.stderr, flush=True)
        write_job_record(job, "failed", errors[i], {})
        records.append(job)
    if new_task is None:  # every job failed: nothing to run
        global LAST_SWEEP
        LAST_SWEEP = write_table(Path(sweep_dir))
        print_table(LAST_SWEEP)
        sys.exit(2)
    with read_write(config.hydra):
        config.hydra.overrides.task = new_task
    return records


def _without_bad_values(parsed, jobs: list[list[str]], errors: dict[int, str]) -> list | None:
    """The task overrides with every sweep value whose jobs all failed left out, when what is
    left is exactly the jobs that compose; else None."""
    bad_values: dict[str, set[str]] = {}
    for o in parsed:
        if not o.is_sweep_override():
            continue
        key = o.get_key_element()
        for val in o.sweep_string_iterator():
            item = f"{key}={val}"
            having = [i for i, job in enumerate(jobs) if item in job]
            if having and all(i in errors for i in having):
                bad_values.setdefault(key, set()).add(item)
    left = {
        i
        for i, job in enumerate(jobs)
        if not any(x in bad_values.get(x.split("=", 1)[0], ()) for x in job)
    }
    if left != set(range(len(jobs))) - set(errors):
        return None
    out = []
    for o in parsed:
        if not o.is_sweep_override():
            out.append(o.input_line)
            continue
        key = o.get_key_element()
        vals = [v for v in o.sweep_string_iterator() if f"{key}={v}" not in bad_values.get(key, ())]
        out.append(f"{key}={vals[0]}" if len(vals) == 1 else f"{key}=choice({','.join(vals)})")
    return out


try:
    from hydra.experimental.callback import Callback as _Callback
except ImportError:  # pragma: no cover - hydra is a base dependency
    _Callback = object  # type: ignore[misc,assignment]


class SweepTable(_Callback):
    """Hydra callback: the sweep-level table at the end of a multirun."""

    def __init__(self) -> None:
        self.sweep_dir: Path | None = None

    def on_multirun_start(self, config, **kwargs: Any) -> None:
        self.sweep_dir = Path(str(config.hydra.sweep.dir))
        leave_out_bad_jobs(config, self.sweep_dir)

    def on_multirun_end(self, config, **kwargs: Any) -> None:
        global LAST_SWEEP
        sweep_dir = self.sweep_dir or Path(str(config.hydra.sweep.dir))
        if not sweep_dir.is_dir():
            return
        LAST_SWEEP = write_table(sweep_dir)
        print_table(LAST_SWEEP)
