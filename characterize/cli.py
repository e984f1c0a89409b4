"""``splitbench-profiles``: fit phase models and report their held-out error, plot, import.

Commands:

- ``fit [--source reference|CSV|FOLDER] [--wide] [--json]``: fit every (model, gpu, tp) and
  print the error table (mape and max_error as percent in the text table, which fits 100
  columns, its notes below it; ``--wide``: every column; FRACTIONS in ``--json`` rows: model,
  gpu, tp, phase, points, mape, max_error, power_mape, note). A folder source merges every
  profile table under it. Fallback (not measured) power shows as ``fallback`` where it appears;
- ``plot [--source ..] [--out DIR]``: seaborn PNGs of measured points vs fitted curves, one
  per (model, gpu, tp): prefill latency vs batch tokens, decode latency vs batch for several
  contexts, power per phase;
- ``import-reference OUT.csv``: write the converted reference table (contract 2), atomically;
- ``derive --to GPU --model M [--from GPU] [--tp 8] [--source ..] --out FILE``: write the
  profile table derived for a GPU nobody profiled (:mod:`characterize.modeling.derive`);
  ``derive --check`` prints the held-out A100->H100 and H100->A100 derivation errors.
- ``compose --model M --gpu G [--tp 8] [--engine vllm|sglang|trtllm] [--engine-version V]
  [--dtype bf16|fp8] --out FILE``: write the profile table composed from AIConfigurator's
  measured operator latencies (the ``aic`` extra; :mod:`characterize.modeling.compose`);
  ``compose --list`` what the package has, ``compose --held-out`` the fitted engine overhead's
  held-out error against measured serving.

Bad input: one line ``error: ...`` on stderr, exit status 2.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from characterize.modeling.network import NetworkError
from characterize.modeling.profiles import (
    ProfileError,
    read_profile_source,
    reference_profiles,
    write_profiles,
)
from characterize.modeling.specs import SpecError
from common.atomic import atomic_path
from common.errors import error_line
from common.units import MS_PER_S, s_to_ms


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="splitbench-profiles", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    f = sub.add_parser("fit", help="fit phase models and print their held-out error")
    src_help = "'reference', a profile CSV, or a folder (every profile table under it, merged)"
    f.add_argument("--source", default="reference", help=src_help)
    f.add_argument("--json", action="store_true", help="JSON rows (errors as fractions)")
    f.add_argument("--wide", action="store_true", help="every column (wider than 100)")
    pl = sub.add_parser("plot", help="plot measured points vs fitted curves (PNG)")
    pl.add_argument("--source", default="reference", help=src_help)
    pl.add_argument("--out", default="results/profiles", help="output folder")
    im = sub.add_parser("import-reference", help="write the converted reference table")
    im.add_argument("out", help="output CSV path")
    _add_derive_parser(sub)
    from characterize.modeling.compose.cli import add_parser as _add_compose_parser

    _add_compose_parser(sub)
    return p


def _add_derive_parser(sub) -> None:
    from characterize.modeling.derive import OVERHEAD_SCALINGS

    d = sub.add_parser("derive", help="derive a GPU's profile from its spec and a profiled GPU")
    d.add_argument("--from", dest="from_gpu", help="profiled GPU (default: closest by spec)")
    d.add_argument("--to", dest="to_gpu", help="target GPU spec name (e.g. h200-141gb)")
    d.add_argument("--model", help="model spec name (e.g. llama2-70b)")
    d.add_argument("--tp", type=int, default=8, help="tensor-parallel degree (default 8)")
    d.add_argument("--source", default="reference", help="'reference' or a profile CSV path")
    d.add_argument("--out", help="output CSV path (written atomically, with a .meta.json)")
    d.add_argument(
        "--overhead",
        choices=OVERHEAD_SCALINGS,
        default="clock",
        help="per-iteration overhead on the target: x SM clock ratio (default) or unchanged",
    )
    d.add_argument(
        "--check",
        action="store_true",
        help="print the held-out A100->H100 and H100->A100 errors on the reference profiles",
    )


def _profiles(source: str):
    return read_profile_source(source)[0]


def _nan_to_none(v):
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def _cmd_fit(args) -> int:
    from characterize.modeling.phase_model import load_phase_models

    models = load_phase_models(args.source)
    table = models.error_table()
    if args.json:
        cols = ["model", "gpu", "tp", "phase", "points", "mape", "max_error", "fit_mape",
                "outliers", "power_points", "power_mape", "power_max_error", "power_source",
                "note"]  # fmt: skip
        rows = [
            {c: _nan_to_none(r[c].item() if hasattr(r[c], "item") else r[c]) for c in cols}
            for _, r in table.iterrows()
        ]
        print(json.dumps(rows, indent=1))
        return 0
    print(f"held-out error (leave-one-point-out), source: {args.source}")
    for t in models.tables:
        print(f"  table: {t}")
    print(_wide_table(table) if args.wide else _narrow_table(table))
    fallback = table[table["power_source"] != "measured"]
    if len(fallback):
        print("power fallback (no measured power; not a measurement):")
        for _, r in fallback.drop_duplicates(["model", "gpu", "tp"]).iterrows():
            print(f"  {r['model']}/{r['gpu']}/tp{r['tp']}: {r['power_source']}")
    return 0


def _pct(v) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v * 100:.1f}"


def _wide_table(table) -> str:
    """Every column of the error table (percent columns as %)."""
    show = table.copy()
    for c in ["mape", "max_error", "fit_mape", "power_mape", "power_max_error"]:
        show[c] = (show[c] * 100).round(1)
    show = show.rename(
        columns={
            "mape": "mape_%",
            "max_error": "max_err_%",
            "fit_mape": "fit_mape_%",
            "power_mape": "power_mape_%",
            "power_max_error": "power_max_%",
        }
    )
    return show.to_string(index=False)


def _narrow_table(table, width: int = 100) -> str:
    """The error table in ``width`` columns: the numbers, notes numbered below it; power error
    reads ``fallback`` where the power curve is not fitted on measured points."""
    import textwrap

    import pandas as pd

    notes: list[str] = []
    rows = []
    for _, r in table.iterrows():
        ref = ""
        if r["note"]:
            notes.append(str(r["note"]))
            ref = f"[{len(notes)}]"
        measured = r["power_source"] == "measured"
        rows.append(
            {
                "model": r["model"],
                "gpu": r["gpu"],
                "tp": int(r["tp"]),
                "phase": r["phase"],
                "points": int(r["points"]),
                "mape_%": _pct(r["mape"]),
                "max_%": _pct(r["max_error"]),
                "fit_%": _pct(r["fit_mape"]),
                "out": int(r["outliers"]),
                "power_%": _pct(r["power_mape"]) if measured else "fallback",
                "note": ref,
            }
        )
    text = pd.DataFrame(rows).to_string(index=False) if rows else "(no fits)"
    lines = [line[:width] for line in text.splitlines()]
    for i, n in enumerate(notes, 1):
        lines += textwrap.wrap(n, width, initial_indent=f"[{i}] ", subsequent_indent="    ")
    return "\n".join(lines)


def _cmd_import(args) -> int:
    path = write_profiles(
        reference_profiles(),
        args.out,
        metadata={
            "source": "splitwise-sim data/perf_model.csv @8f99e7d (MIT, Pratyush Patel)",
            "converted_by": "characterize.modeling.profiles.reference_profiles",
        },
    )
    print(f"wrote {path}")
    return 0


def _cmd_derive_check(args) -> int:
    from characterize.modeling.derive import TARGET_MAPE, reference_check

    table = reference_check(args.overhead)
    print(
        f"held-out derivation error on the reference profiles (overhead: {args.overhead}):\n"
        "derived from the source GPU's rows only, compared with the other GPU's measured points"
    )
    show = table[["from_gpu", "to_gpu", "model", "tp", "phase", "points"]].copy()
    show["from_gpu"] = show["from_gpu"].str.replace("-80gb", "", regex=False)
    show["to_gpu"] = show["to_gpu"].str.replace("-80gb", "", regex=False)
    for col, name in (("mape", "mape_%"), ("max_error", "max_%"), ("bias", "bias_%")):
        show[name] = (table[col] * 100).round(1)
    show["e_c"] = table["e_compute"].round(2)
    show["e_w"] = table["e_weights"].round(2)
    show["e_kv"] = table["e_kv"].round(2)
    show["ovh_ms"] = table["overhead_ms"].round(1)
    show["req_ms"] = table["request_ms"].round(2)
    show["ok"] = (table["mape"] <= TARGET_MAPE).map({True: "yes", False: "NO"})
    print(show.rename(columns={"from_gpu": "from", "to_gpu": "to"}).to_string(index=False))
    per_phase = table.groupby("phase", sort=False)["mape"].agg(["mean", "max"])
    for phase, r in per_phase.iterrows():
        print(
            f"{phase}: mean mape {r['mean']:.1%}, worst group {r['max']:.1%} "
            f"(target <= {TARGET_MAPE:.0%})"
        )
    print(
        "e_c, e_w, e_kv: the source's fitted fraction of its dense bf16 peak and of its HBM\n"
        "bandwidth reading weights / moving KV; ovh_ms, req_ms: its per-iteration and\n"
        "per-request overheads (x the SM clock ratio on the target)"
    )
    borrowed = table[table["weight_bytes_from"] != ""].drop_duplicates(["from_gpu", "model"])
    for r in borrowed.itertuples(index=False):
        print(
            f"{r.model} on {r.from_gpu}: one tp only; s per weight byte from "
            f"{r.weight_bytes_from}'s multi-tp fit"
        )
    return 0


def _cmd_derive(args) -> int:
    from characterize.modeling.derive import (
        DeriveError,
        assumptions_text,
        derive_profiles,
        pick_source_gpu,
        source_efficiency,
        source_profiles,
    )
    from characterize.modeling.profiles import profile_gpu_spec
    from characterize.modeling.specs import load_model

    if args.check:
        return _cmd_derive_check(args)
    for flag, value in (("--to", args.to_gpu), ("--model", args.model), ("--out", args.out)):
        if not value:
            raise DeriveError(f"derive needs {flag} (or --check)")
    if args.tp < 1:
        raise DeriveError(f"--tp must be >= 1 (got {args.tp})")
    profiles = source_profiles(args.source)
    load_model(args.model)
    profile_gpu_spec(args.to_gpu)
    from_gpu = args.from_gpu or pick_source_gpu(profiles, args.model, args.to_gpu, args.tp)
    table = derive_profiles(
        profiles,
        args.model,
        from_gpu,
        args.to_gpu,
        args.tp,
        overhead_scaling=args.overhead,
        label=args.source,
    )
    fits = source_efficiency(profiles, args.model, from_gpu, args.tp, args.source)
    meta = {
        "kind": "derived (not a measurement)",
        "model": args.model,
        "from_gpu": from_gpu,
        "to_gpu": args.to_gpu,
        "tp": args.tp,
        "profiles": args.source,
        "assumptions": assumptions_text(from_gpu, args.to_gpu, args.tp, args.overhead),
        "source_fit": [f.__dict__ for f in fits],
        "command": "splitbench-profiles derive",
    }
    path = write_profiles(table, args.out, metadata=meta)
    print(f"wrote {path} ({len(table)} derived points, {from_gpu} -> {args.to_gpu})")
    return 0


def _cmd_compose(args) -> int:
    from characterize.modeling.compose.cli import run

    return run(args)


def plot_phase_models(profiles, models, out_dir: Path) -> list[Path]:
    """One PNG per (model, gpu, tp): measured points vs the fitted curves.

    Panels: prefill latency vs batch tokens (single prompts and batches of 512-token prompts),
    decode step latency vs batch size at several contexts per request, power per phase.
    Written atomically; returns the paths. seaborn/matplotlib are imported here only.
    """

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import seaborn as sns

    sns.set_theme(style="whitegrid")
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for pm in models:
        rows = profiles[
            (profiles["model"] == pm.model)
            & (profiles["gpu"] == pm.gpu)
            & (profiles["tp"] == pm.tp)
        ].copy()
        rows["batch_tokens"] = rows["batch_size"] * rows["tokens_per_request"]
        rows["latency_ms"] = rows["latency_s"] * MS_PER_S
        pre = rows[rows["phase"] == "prefill"].copy()
        dec = rows[rows["phase"] == "decode"].copy()
        fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
        ax = axes[0]
        pre["sweep"] = np.where(pre["batch_size"] == 1, "1 prompt", "batch of prompts")
        sns.scatterplot(data=pre, x="batch_tokens", y="latency_ms", hue="sweep", ax=ax)
        t_max = max(int(pre["batch_tokens"].max()), 8192)
        grid = np.unique(np.geomspace(16, t_max, 80).astype(int))
        ax.plot(grid, [s_to_ms(pm.prefill_time([int(t)])) for t in grid], label="fit: 1 prompt")
        bs = [b for b in range(1, t_max // 512 + 1)]
        ax.plot([512 * b for b in bs], [s_to_ms(pm.prefill_time([512] * b)) for b in bs],
                "--", label="fit: b x 512")  # fmt: skip
        ax.set(xscale="log", yscale="log", xlabel="batch tokens", ylabel="prefill latency (ms)")
        ax.legend(fontsize=8)
        ax = axes[1]
        ctx_values = sorted(set(dec["tokens_per_request"]))
        dec["context/request"] = dec["tokens_per_request"].astype(str)
        sns.scatterplot(data=dec, x="batch_size", y="latency_ms", hue="context/request", ax=ax,
                        legend=len(ctx_values) <= 8)  # fmt: skip
        b_grid = np.arange(1, max(int(dec["batch_size"].max()), 64) + 1)
        for ctx in (576, 2048, 8192):
            ax.plot(b_grid, [s_to_ms(pm.decode_time(int(b), int(b * ctx))) for b in b_grid],
                    label=f"fit: {ctx} ctx/request")  # fmt: skip
        ax.set(xlabel="batch size", ylabel="decode step latency (ms)", xscale="log")
        ax.legend(fontsize=7)
        ax = axes[2]
        ppre = pre[pre["power_w"].notna()]
        pdec = dec[dec["power_w"].notna()]
        ax.scatter(ppre["batch_tokens"], ppre["power_w"], label="prefill (measured)", marker="o")
        ax.scatter(pdec["batch_size"], pdec["power_w"], label="decode (measured)", marker="s")
        ax.plot(grid, [pm.prefill_power(int(t)) for t in grid], label="prefill fit (x=tokens)")
        ax.plot(b_grid, [pm.decode_power(int(b)) for b in b_grid], label="decode fit (x=batch)")
        ax.axhline(pm.idle_power_w, color="grey", ls=":", label="idle")
        ax.set(xscale="log", xlabel="batch tokens (prefill) / batch size (decode)",
               ylabel="instance power (W)")  # fmt: skip
        ax.legend(fontsize=7)
        fig.suptitle(f"{pm.model} / {pm.gpu} / TP{pm.tp}  (source: {models.source})")
        fig.tight_layout()
        path = out_dir / f"{pm.model}_{pm.gpu}_tp{pm.tp}.png"
        try:
            with atomic_path(path, suffix=".png") as tmp:
                fig.savefig(tmp, dpi=90, metadata={"Software": None})
        finally:
            plt.close(fig)
        paths.append(path)
    return paths


def _cmd_plot(args) -> int:
    from characterize.modeling.phase_model import fit_all

    profiles = _profiles(args.source)
    models = fit_all(profiles, source=args.source)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # plotted curves extend past the measured range
        paths = plot_phase_models(profiles, models, Path(args.out))
    for p in paths:
        print(f"wrote {p}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``splitbench-profiles``; returns the exit status."""
    from common.entry import interrupted, interruptible

    args = _parser().parse_args(argv)
    handlers = {"fit": _cmd_fit, "plot": _cmd_plot, "import-reference": _cmd_import,
                "derive": _cmd_derive, "compose": _cmd_compose}  # fmt: skip
    try:
        with interruptible():  # Ctrl-C: one line, exit 130 (common.entry guards the start-up)
            return handlers[args.command](args)
    except KeyboardInterrupt:
        return interrupted()
    except (ProfileError, SpecError, NetworkError, OSError) as e:
        print(f"error: {error_line(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
