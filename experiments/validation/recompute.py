"""Recompute a published validation report's judged tables from its own records.

The check CI runs on ``results/reference/validation/``: every judged rung is simulated again
from what the report published, and judged against the published real runs by the same code as
the run (:func:`experiments.validation.scoring.design_tables`); the result must equal the
published ``errors.csv`` and ``capacity.csv`` value for value, as written (``%.6g``). A change
of the simulator, the phase model, the trace handling or the judge shows as a difference.
Sim-vs-real itself is never gated (too noisy); only that the report still follows from its
records.

What the published folder holds for this (written by :func:`publish_inputs` at publication):

- ``config.json``: the run's config (:func:`dataclasses.asdict` of the ValidateConfig);
- ``sims/<design>/<load>/``: ``trace.csv`` (the rung's trace) and ``sim.json`` (the load, the
  simulator's overrides with the profile's path as ``{profile}``, the profile's published path,
  the speed factor);
- ``predict.json``: per design the predicted C and R* and whether the capacity and R* were
  measured on the simulated rungs (``same_runs``);
- ``runs/replay-<design>-<load>-r<k>/``: the real runs' per-request records;
- ``profile/``: the profile of each design.

Usage: ``python -m experiments.validation.recompute results/reference/validation`` (exit 0: the
same; 1: a difference, listed; 2: a published file is missing or unreadable, one line).
"""

from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import asdict, fields
from pathlib import Path

import pandas as pd

from experiments.errors import ExperimentError

PROFILE = "{profile}"


def simulate_steps(steps, design: str, loads):
    """(load, its ``simulate-<design>-<load>`` step.json) for each load of ``loads`` whose
    simulation step finished in the run dir of ``steps``."""
    for ld in loads:
        name = f"simulate-{design}-{ld.name}"
        st = steps.path(name) / "step.json"
        if name in steps.results and st.is_file():
            yield ld, json.loads(st.read_text())


def publish_inputs(c, steps, d: Path, profiles: dict[str, str], by_design: dict) -> None:
    """Write ``config.json``, ``predict.json`` and ``sims/`` into the published folder ``d``
    (module doc); ``profiles``: each profile source path -> its path under ``d``."""
    from common.atomic import write_json_atomic, write_text_atomic
    from experiments.validation.config import ValidateConfig

    # the validation's own sections (not the app's machine paths)
    plain = asdict(c)
    write_json_atomic(d / "config.json", {f.name: plain[f.name] for f in fields(ValidateConfig)})
    pred = {}
    for design in c.designs:
        judge = steps.path(f"judge-{design}") / "step.json"
        if f"judge-{design}" not in steps.results or not judge.is_file():
            continue
        same = bool(json.loads(judge.read_text())["config"].get("same_runs", False))
        p = steps.results.get(f"predict-{design}") or {}
        pred[design] = {"capacity_rps": p.get("capacity_rps"), "rstar_rps": p.get("rstar_rps"),
                        "same_runs": same}  # fmt: skip
        for ld, step in simulate_steps(steps, design, by_design.get(design, [])):
            src = step["config"]["source"]
            out = d / "sims" / design / ld.name
            tstep = next(i for i in step["inputs"] if i.startswith("trace-"))
            write_text_atomic(out / "trace.csv",
                              (steps.path(tstep) / "trace.csv").read_text())  # fmt: skip
            write_json_atomic(out / "sim.json", {
                "load": asdict(ld),
                "overrides": [o.replace(src, PROFILE) for o in step["config"]["overrides"]],
                "profile": profiles.get(src),
                "speed_factor": float(step["result"].get("speed_factor", 1.0)),
                "real_runs": [f"runs/{i}" for i in step["inputs"] if i.startswith("replay-")]
                or [f"runs/replay-{design}-{ld.name}-r{k}" for k in range(int(c.repeats))],
            })  # fmt: skip
    write_json_atomic(d / "predict.json", pred)


def _read_json(p: Path) -> dict:
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise ExperimentError(f"{p}: {type(e).__name__}: {e}") from None


def recompute(pub: Path, work: Path, extra: dict[str, list[str]] | None = None
              ) -> tuple[pd.DataFrame, pd.DataFrame]:  # fmt: skip
    """(errors, capacity) of every design, recomputed from the published folder ``pub`` with
    the simulations under ``work``; ``extra``: design -> simulator overrides appended to each of
    its rungs' (a what-if on the same real runs: :mod:`experiments.validation.what_if`)."""
    from experiments.validation.config import from_plain
    from experiments.validation.scoring import design_tables
    from experiments.validation.simargs import replay_argv
    from experiments.validation.tools import run_tool
    from experiments.validation.workload import Load

    pub = Path(pub).resolve()
    c = from_plain(_read_json(pub / "config.json"))
    pred = _read_json(pub / "predict.json")
    errs, caps = [], []
    for design in c.designs:
        if design not in pred:
            continue
        loads, sims, reals, traces = [], {}, {}, {}
        for f in sorted((pub / "sims" / design).glob("*/sim.json")):
            s = _read_json(f)
            ld = Load(**s["load"])
            if not s.get("profile"):
                raise ExperimentError(f"{f}: no published profile for this simulation")
            prof = str(pub / s["profile"])
            ov = [o.replace(PROFILE, prof) for o in s["overrides"]]
            ov += list((extra or {}).get(design, []))
            out = Path(work) / design / ld.name
            trace = f.parent / "trace.csv"
            run_tool(f"recompute-{design}-{ld.name}",
                     replay_argv(trace, out, prof, int(c.seed), ov, float(s["speed_factor"])),
                     out / "replay.log", 1800)  # fmt: skip
            loads.append(ld)
            sims[ld.name] = out
            reals[ld.name] = [pub / r for r in s["real_runs"]]
            traces[ld.name] = trace
        order = {n: i for i, n in enumerate(_published_order(pub, design))}
        loads.sort(key=lambda ld: order.get(ld.name, len(order)))
        p = pred[design]
        e, cap = design_tables(c, design, loads, sims, reals, traces, p, bool(p["same_runs"]))
        errs.append(e)
        caps.append(cap)
    return pd.concat(errs, ignore_index=True), pd.concat(caps, ignore_index=True)


def _published_order(pub: Path, design: str) -> list[str]:
    """The loads of ``design`` in the published errors.csv's order (the run's)."""
    df = pd.read_csv(pub / "errors.csv")
    return list(dict.fromkeys(df.loc[df["design"] == design, "load"]))


def check(pub: Path, work: Path | None = None) -> list[str]:
    """The differences between the published tables and their recomputation (empty: none)."""
    pub = Path(pub)
    with tempfile.TemporaryDirectory() as tmp:
        err, cap = recompute(pub, Path(work or tmp))
        diffs = []
        for name, df in (("errors.csv", err), ("capacity.csv", cap)):
            got = df.to_csv(index=False, float_format="%.6g").splitlines()
            want = (pub / name).read_text().splitlines()
            if len(got) != len(want):
                diffs.append(f"{name}: {len(got) - 1} rows recomputed, {len(want) - 1} published")
            diffs += [f"{name} row {i}: published {w!r}, recomputed {g!r}"
                      for i, (g, w) in enumerate(zip(got, want, strict=False)) if g != w]  # fmt: skip
    return diffs


def main(argv: list[str] | None = None) -> int:
    """The command (module doc): exit 0 the same, 1 a difference, 2 bad input, 130 Ctrl-C."""
    from experiments.validation.tools import folder_command

    def work(folder: Path) -> int:
        diffs = check(folder)
        for line in diffs:
            print(line)
        print(f"{folder}: " + (f"{len(diffs)} difference(s)" if diffs else "recomputed exactly"))
        return 1 if diffs else 0

    return folder_command("experiments.validation.recompute", argv, work)


if __name__ == "__main__":
    sys.exit(main())
