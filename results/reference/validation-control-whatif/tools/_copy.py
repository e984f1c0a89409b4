"""A copy of a published validation folder for a what-if: every entry but ``sims/`` linked, each
``sims/<design>/<load>/sim.json`` rewritten by ``edit`` (its trace linked)."""

import json
import shutil
from collections.abc import Callable
from pathlib import Path


def copy_published(pub: Path, dst: Path, edit: Callable[[dict, str, str], dict]) -> None:
    """Copy ``pub`` to ``dst`` (replaced), each rung's sim.json as ``edit(sim, design, load)``."""
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    for p in pub.iterdir():
        if p.name != "sims":
            (dst / p.name).symlink_to(p.resolve())
    for f in pub.glob("sims/*/*/sim.json"):
        out = dst / f.relative_to(pub)
        out.parent.mkdir(parents=True, exist_ok=True)
        (out.parent / "trace.csv").symlink_to((f.parent / "trace.csv").resolve())
        sim = edit(json.loads(f.read_text()), f.parent.parent.name, f.parent.name)
        out.write_text(json.dumps(sim, indent=1))
