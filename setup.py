"""Build hook: compiles the engine's hot modules (replay/_core.py says which and why) where
Cython and a C compiler are there. Without either the install goes on and the engine runs its
Python source; everything else is in pyproject.toml."""

import hashlib
import json
import os
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent
CORE_MODULES = (
    "spans", "kv_transfer", "prefix_cache", "routing", "machine", "vllm_policy", "event_loop",
)  # replay/_core.py
BUILD_RECORD = "_core_build.json"
# -ffp-contract=off: no fused multiply-add, so C rounds each operation as CPython does
CFLAGS = ["-O2", "-ffp-contract=off"]


class OptionalCoreBuild(build_ext):
    """build_ext that warns instead of failing, and records the sources it compiled."""

    def run(self):
        if not self.extensions:
            return
        try:
            super().run()
        except Exception as e:  # no compiler, no headers: the source runs instead
            self.warn(f"splitbench: the compiled core was not built ({e}); replay runs its source")
            return
        record = {m: hashlib.sha256((HERE / "replay" / f"{m}.py").read_bytes()).hexdigest()
                  for m in CORE_MODULES}  # fmt: skip
        out = (HERE if self.inplace else Path(self.build_lib)) / "replay" / BUILD_RECORD
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, out)


def core_extensions():
    if os.environ.get("SPLITBENCH_PURE_PYTHON", "") not in ("", "0"):
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        print("splitbench: Cython is missing; the compiled core is not built")
        return []
    exts = cythonize(
        [f"replay/{m}.py" for m in CORE_MODULES],
        language_level=3,
        quiet=True,
        build_dir="build/cython",  # the generated C (not beside the sources)
        compiler_directives={"binding": True, "annotation_typing": False},  # types: the .pxd
    )
    for e in exts:
        e.extra_compile_args = list(CFLAGS)
    return exts


setup(ext_modules=core_extensions(), cmdclass={"build_ext": OptionalCoreBuild})
