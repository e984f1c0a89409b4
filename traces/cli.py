"""``splitbench-traces``: describe, plot and convert request traces.

Usage::

    splitbench-traces describe NAME|PATH [--json] [--format FMT] [--sort] [--cache-blocks N ...]
    splitbench-traces plot NAME|PATH [--out DIR] [--format FMT] [--sort]
    splitbench-traces convert IN OUT [--from FMT] [--sort]

NAME is a bundled trace (``azure-code-2023``, ``azure-conv-2023``, ``mooncake-conversation``,
``mooncake-synthetic``). For traces with block hashes (Mooncake), ``describe`` reports the
share of blocks seen before with an unbounded cache and with an LRU cache of each N blocks
given to ``--cache-blocks``. A generic CSV needs
``--format generic --map arrival_s=ts,prompt_tokens=in,output_tokens=out [--time-unit ms]``.
Bad input prints ``error: <one line>`` on stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence

from traces.errors import TraceError
from traces.formats import FORMAT_NAMES
from traces.schema import BLOCK_HASHES, DATETIME, TIME_UNITS

DEFAULT_PLOT_DIR = "results/traces"


class _UsageError(Exception):
    """argparse's complaint, turned into our one-line error."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise _UsageError(message)


def _mapping(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise TraceError(
                f"--map: expected TARGET=SOURCE pairs separated by commas, got {item!r}"
            )
        out[key.strip()] = value.strip()
    return out


def _cache_blocks(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer (blocks), got {text!r}")
    return value


def _source_args(p: argparse.ArgumentParser, fmt_flag: str) -> None:
    p.add_argument(
        fmt_flag,
        dest="fmt",
        choices=FORMAT_NAMES,
        default=None,
        help="input format (default: detect from the columns)",
    )
    p.add_argument(
        "--sort", action="store_true", help="sort by arrival instead of rejecting out-of-order rows"
    )
    p.add_argument(
        "--map",
        dest="mapping",
        type=str,
        default=None,
        help="generic format: TARGET=SOURCE,... (targets: request_id, arrival_s, "
        "prompt_tokens, output_tokens)",
    )
    p.add_argument(
        "--time-unit",
        default="s",
        choices=[*TIME_UNITS, DATETIME],
        help="generic format: unit of the arrival column (default s)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of ``splitbench-traces``."""
    parser = _Parser(
        prog="splitbench-traces",
        description="Describe, plot and convert request traces (splitbench contract 1).",
        epilog="Bundled traces: azure-code-2023, azure-conv-2023, mooncake-conversation, "
        "mooncake-synthetic. Bad input: 'error: ...', exit 2.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    d = sub.add_parser("describe", help="print trace statistics")
    d.add_argument("trace", help="bundled trace name or trace file")
    d.add_argument("--json", action="store_true", help="print JSON instead of a table")
    d.add_argument(
        "--cache-blocks",
        type=_cache_blocks,
        nargs="+",
        action="extend",
        default=[],
        metavar="N",
        help="also report block reuse with an LRU cache of N blocks (several N allowed; "
        "traces with block hashes only)",
    )
    _source_args(d, "--format")
    pl = sub.add_parser("plot", help="write token-CDF and arrival-rate PNGs")
    pl.add_argument("trace", help="bundled trace name or trace file")
    pl.add_argument(
        "--out", default=DEFAULT_PLOT_DIR, help=f"output folder (default {DEFAULT_PLOT_DIR})"
    )
    _source_args(pl, "--format")
    c = sub.add_parser("convert", help="convert a trace to our CSV/Parquet (by OUT's extension)")
    c.add_argument("input", help="bundled trace name or trace file")
    c.add_argument("output", help="output file, .csv or .parquet")
    _source_args(c, "--from")
    return parser


def _load(name: str, args: argparse.Namespace):
    from traces.loading import load

    mapping = _mapping(args.mapping) if args.mapping else None
    return load(name, args.fmt, sort=args.sort, mapping=mapping, time_unit=args.time_unit)


def _fmt(value) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def format_table(stats: dict) -> str:
    """Human-readable table of :func:`traces.stats.describe` output."""
    rows = [
        ("requests", _fmt(stats["requests"])),
        ("span (s)", _fmt(stats["span_s"])),
        ("mean rate (req/s)", _fmt(stats["mean_rate_rps"])),
        ("inter-arrival CV", _fmt(stats["interarrival_cv"])),
        ("busiest second (requests)", _fmt(stats["busiest_second_requests"])),
        ("busiest minute (requests)", _fmt(stats["busiest_minute_requests"])),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [f"{k:<{width}}  {v}" for k, v in rows]
    head = ["tokens", "mean", "p50", "p90", "p99", "max"]
    table = [head]
    for col, label in (("prompt_tokens", "prompt"), ("output_tokens", "output")):
        table.append(
            [label] + [_fmt(stats[f"{col}_{k}"]) for k in ("mean", "p50", "p90", "p99", "max")]
        )
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    lines.append("")
    for r in table:
        lines.append(
            "  ".join(
                c.rjust(w) if i else c.ljust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )
    lines.append("")
    lines.append(f"prompt:output tokens (sum/sum)  {_fmt(stats['prompt_output_ratio'])}")
    if "blocks" in stats:
        lines.append("")
        size = stats["block_tokens"]
        unit = f"{size}-token blocks" if size else "blocks (size unknown)"
        lines.append(f"{unit}: {_fmt(stats['blocks'])}, {_fmt(stats['distinct_blocks'])} distinct")
        caches = [("unbounded", "unbounded cache")]
        caches += [
            (k[len("reuse_seen_") :], f"LRU {int(k[len('reuse_seen_lru_') :]):,} blocks")
            for k in stats
            if k.startswith("reuse_seen_lru_")
        ]
        width = max(len(label) for _, label in caches)
        lines.append(f"{'block reuse':<{width}}  seen before  prefix")
        for tag, label in caches:
            seen, prefix = stats[f"reuse_seen_{tag}"], stats[f"reuse_prefix_{tag}"]
            lines.append(f"{label:<{width}}  {seen:>11.1%}  {prefix:>6.1%}")
    return "\n".join(lines)


def _stem(name: str) -> str:
    from pathlib import Path

    from traces.bundled import BUNDLED

    return name if name in BUNDLED else Path(name).stem


def _run(args: argparse.Namespace) -> int:
    if args.command == "describe":
        from traces.stats import describe

        table = _load(args.trace, args)
        if args.cache_blocks and BLOCK_HASHES not in table.columns:
            raise TraceError(
                f"--cache-blocks: {args.trace} has no block hashes (a Mooncake trace's "
                "hash_ids give them)"
            )
        stats = describe(table, args.cache_blocks)
        if args.json:
            clean = {
                k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in stats.items()
            }
            print(json.dumps({"trace": args.trace, **clean}, indent=2))
        else:
            print(f"trace  {args.trace}")
            print(format_table(stats))
        return 0
    if args.command == "plot":
        from traces.plots import plot_trace

        for path in plot_trace(_load(args.trace, args), args.out, _stem(args.trace)):
            print(path)
        return 0
    from traces.formats import save

    table = _load(args.input, args)
    print(f"{save(table, args.output)}: {len(table):,} requests")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 2 bad input, 130 Ctrl-C: one line
    ``interrupted``, no partial output file; before this runs :mod:`common.entry` guards it)."""
    from common.entry import interrupted, interruptible

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        with interruptible():
            return _run(args)
    except KeyboardInterrupt:
        return interrupted()
    except (TraceError, _UsageError) as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    except OSError as exc:  # the writers name the output file (common.atomic), even when full
        from common.errors import error_line

        print(f"error: {error_line(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
