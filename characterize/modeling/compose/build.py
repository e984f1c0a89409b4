"""Regenerate the committed composed tables: ``python -m characterize.modeling.compose.build``.

Writes, for every target of :func:`targets` (each engine's newest version with data on each
GPU), ``characterize/modeling/data/composed/<engine>-<version>/<gpu>/<model>-<dtype>-tp<k>.csv``
and its ``.meta.json``, with the committed engine overhead (``overhead.csv``) added. The same
package version and overhead table give the same bytes. ``--refit`` first refits the overhead on
the package's measured serving points and rewrites ``overhead.csv`` and ``held_out.csv``
(:mod:`.fit`, minutes). ``--check`` regenerates into a temporary folder and compares bytes.
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from characterize.modeling.compose import library
from characterize.modeling.compose.overhead import COMPOSED_DIR, committed_overhead
from characterize.modeling.compose.table import base_model_name, compose_profiles, model_for_dtype
from characterize.modeling.profiles import write_profiles

GPUS = ("a100-80gb", "h100-80gb", "h200-141gb", "b200-180gb")
MODELS = (("llama2-70b", "bf16"), ("llama3.1-70b", "bf16"), ("llama3.1-70b", "fp8"))
TP = 8


def table_path(root: Path, engine: str, version: str, gpu: str, model: str, dtype: str,
               tp: int) -> Path:  # fmt: skip
    """``<root>/<engine>-<version>/<gpu>/<model>-<dtype>-tp<tp>.csv``."""
    return Path(root) / f"{engine}-{version}" / gpu / f"{model}-{dtype}-tp{int(tp)}.csv"


def targets() -> list[tuple[str, str, str, str, str]]:
    """(engine, version, gpu, model, dtype) of every committed table: every engine on every GPU
    of :data:`GPUS` at its newest version with data there, every model and dtype of
    :data:`MODELS` that GPU has GEMM data for (no fp8 on A100)."""
    out = []
    for engine in library.ENGINES:
        for gpu in GPUS:
            system = library.GPU_SYSTEMS[gpu]
            if engine not in library.catalogue()[system]:
                continue
            version = library.latest_version(system, engine)
            dtypes = library.catalogue()[system][engine][version]
            for model, dtype in MODELS:
                if dtype in dtypes:
                    out.append((engine, version, gpu, model, dtype))
    return out


def build(root: Path = COMPOSED_DIR, overhead_csv: Path | None = None, quiet: bool = False
          ) -> list[Path]:  # fmt: skip
    """Write every target table under ``root``; returns the paths."""
    paths = []
    for engine, version, gpu, model, dtype in targets():
        kw = {} if overhead_csv is None else {"path": overhead_csv}
        overhead = committed_overhead(engine, gpu, **kw)
        table, meta = compose_profiles(model, gpu, TP, engine, version, dtype, overhead)
        spec, _ = model_for_dtype(model, dtype)
        path = table_path(root, engine, version, gpu, base_model_name(spec, dtype), dtype, TP)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_profiles(table, path, metadata=meta)
        paths.append(path)
        if not quiet:
            print(f"wrote {path} ({len(table)} rows)")
    return paths


def check(root: Path = COMPOSED_DIR) -> list[str]:
    """Regenerate into a temporary folder; the committed files that differ (or are missing)."""
    bad = []
    with tempfile.TemporaryDirectory() as tmp:
        fresh = build(Path(tmp), quiet=True)
        for f in fresh:
            rel = f.relative_to(tmp)
            for p in (rel, rel.with_name(rel.stem + ".meta.json")):
                mine = Path(root) / p
                if not mine.is_file() or not filecmp.cmp(mine, Path(tmp) / p, shallow=False):
                    bad.append(str(mine))
    return bad


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m characterize.modeling.compose.build",
                                description=__doc__.splitlines()[0])  # fmt: skip
    p.add_argument("--refit", action="store_true", help="refit the engine overhead first")
    p.add_argument("--check", action="store_true", help="compare a fresh build with the files")
    args = p.parse_args(argv)
    try:
        if args.check:
            bad = check()
            for b in bad:
                print(f"differs: {b}")
            print("composed tables: " + ("identical" if not bad else f"{len(bad)} differ"))
            return 1 if bad else 0
        if args.refit:
            from characterize.modeling.compose.fit import refit_and_write

            refit_and_write()
        build()
    except library.ComposeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
