"""``splitbench-profiles compose``: write a composed profile table, list what the package has,
print the engine overhead's held-out error.

- ``compose --model M --gpu G [--tp 8] [--engine vllm] [--engine-version V] [--dtype bf16|fp8]
  [--overhead fitted|none] --out FILE.csv``: the contract-2 table (:mod:`.table`) with its
  ``.meta.json``, written atomically; ``--overhead fitted`` (default) adds the committed engine
  overhead of that engine and GPU (``overhead.csv``), ``none`` the operator sums alone;
- ``compose --list``: the systems, engines, versions and dtypes the installed package has;
- ``compose --held-out``: the committed held-out error of the composed profiles against the
  package's measured serving points (``held_out.csv``; no package needed), ``--refit`` first
  recomputes it and the overhead (needs the package; minutes).

Bad names: one line ``error: ...`` listing what exists, exit 2 (the caller's handler).
"""

from __future__ import annotations

from pathlib import Path

from characterize.modeling.compose import library
from characterize.modeling.compose.overhead import COMPOSED_DIR, EngineOverhead

HELD_OUT_CSV = COMPOSED_DIR / "held_out.csv"


def add_parser(sub) -> None:
    c = sub.add_parser(
        "compose",
        help="compose a profile table from AIConfigurator's measured operator latencies",
    )
    c.add_argument("--model", help="model spec name (e.g. llama2-70b, llama3.1-70b)")
    c.add_argument("--gpu", help="GPU spec name: " + ", ".join(library.GPU_SYSTEMS))
    c.add_argument("--tp", type=int, default=8, help="tensor-parallel degree (default 8)")
    c.add_argument("--engine", default="vllm", help="vllm (default), sglang or trtllm")
    c.add_argument("--engine-version", help="default: the newest with data on that GPU")
    c.add_argument("--dtype", help="bf16 or fp8 weights (default: the model spec's)")
    c.add_argument("--overhead", choices=("fitted", "none"), default="fitted",
                   help="add the committed fitted engine overhead (default) or none")  # fmt: skip
    c.add_argument("--out", help="output CSV (written atomically, with a .meta.json)")
    c.add_argument("--list", action="store_true", help="list systems/engines/versions/dtypes")
    c.add_argument("--held-out", action="store_true",
                   help="print the overhead fit's held-out error against measured serving")  # fmt: skip
    c.add_argument("--refit", action="store_true", help="with --held-out: recompute it first")


def _print_list() -> None:
    print(f"{library.PACKAGE} {library.package_version()}: GPU (system): engine versions [dtypes]")
    for gpu, system in library.GPU_SYSTEMS.items():
        for engine, versions in library.catalogue()[system].items():
            vs = "; ".join(f"{v} [{', '.join(d)}]" for v, d in versions.items())
            print(f"  {gpu} ({system}): {engine} {vs}")


def format_held_out(path: Path = HELD_OUT_CSV) -> str:
    """The held-out table as text (errors in percent)."""
    import pandas as pd

    from characterize.modeling.profiles import ProfileError

    if not Path(path).is_file():
        raise ProfileError(f"{path}: no held-out table (splitbench-profiles compose --held-out "
                           "--refit writes it)")  # fmt: skip
    df = pd.read_csv(path, keep_default_na=False)
    return df.to_string(index=False)


def run(args) -> int:
    from characterize.modeling.profiles import write_profiles

    if args.held_out:
        if args.refit:
            from characterize.modeling.compose.fit import refit_and_write

            refit_and_write()
        import os
        import textwrap

        from characterize.modeling.compose.fit import HELD_OUT_NOTE

        shown = os.path.relpath(HELD_OUT_CSV) if HELD_OUT_CSV.is_relative_to(Path.cwd()) else (
            HELD_OUT_CSV
        )
        print(f"held-out error of composed profiles vs measured serving ({shown}):")
        print(format_held_out())
        print(textwrap.fill(HELD_OUT_NOTE, 100))
        return 0
    if args.list:
        _print_list()
        return 0
    for flag, value in (("--model", args.model), ("--gpu", args.gpu), ("--out", args.out)):
        if not value:
            raise library.ComposeError(f"compose needs {flag} (or --list, --held-out)")
    from characterize.modeling.compose.overhead import committed_overhead
    from characterize.modeling.compose.table import compose_profiles

    overhead = (
        committed_overhead(args.engine, args.gpu) if args.overhead == "fitted" else EngineOverhead()
    )
    table, meta = compose_profiles(
        args.model, args.gpu, args.tp, args.engine, args.engine_version, args.dtype, overhead
    )
    meta["command"] = "splitbench-profiles compose " + " ".join(
        f"--{k.replace('_', '-')} {v}"
        for k, v in (("model", args.model), ("gpu", args.gpu), ("tp", args.tp),
                     ("engine", args.engine), ("engine_version", meta["engine_version"]),
                     ("dtype", meta["dtype"]), ("overhead", args.overhead))  # fmt: skip
    )
    path = write_profiles(table, args.out, metadata=meta)
    print(
        f"wrote {path} ({len(table)} points: {meta['engine']} {meta['engine_version']} on "
        f"{meta['system']}, {meta['dtype']}, tp{meta['tp']}; {len(meta['infeasible'])} decode "
        f"points do not fit; {meta['overhead']['added']}; power modelled)"
    )
    return 0
