"""A study's profile sets: the profiles each design's points run on.

The study's own set (``profiles``: ``study.designs`` and ``study.extra_designs``) and each of
``study.profile_sets``, resolved by :mod:`characterize.modeling.profile_sets`: each GPU a design
needs is measured, else composed, else derived, and the report says which (its notes and, in a
study of several sets, the rows' profile-set columns: ``tables.SET_COLUMNS``). A design on a
GPU without a measured profile (H200 today, B200 tomorrow) needs no code here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace

from experiments.config import schemas
from experiments.errors import ExperimentError


@dataclass
class SetRun:
    """One profile set of a study: the designs it runs, its model and, per design, the
    profiles its points name (None: the study context's). ``own``: the study's own set
    (``profiles``); the others come from ``study.profile_sets``."""

    name: str
    text: str  # the set as the report names it (profile_sets.SetSpec.label)
    model: schemas.ModelConf
    designs: list[str]
    profiles: dict[str, dict | None]
    kinds: dict[str, dict[str, str]]  # design -> {profile gpu: reference|measured|composed|derived}
    slo_reference: str  # how the slowdown reference was chosen (the report says it)
    own: bool = True
    labelled: bool = False  # rows carry the profile_set columns (studies with several sets)
    displays: dict[str, str] = field(default_factory=dict)  # design -> display in this set

    base_source: str = "reference"  # the set's resolved base (the designs it covers run on it)

    def label(self, dk: str) -> dict:
        """The profile-set columns of design ``dk``'s rows (none in a study of one set)."""
        if not self.labelled:
            return {}
        prof = self.profiles.get(dk)
        return {
            "profile_set": self.name,
            "profile_set_text": self.text,
            "model": self.model.name,
            "profile_kinds": "; ".join(f"{g}: {k}" for g, k in self.kinds.get(dk, {}).items()),
            "slo_reference": self.slo_reference,
            "profiles_path": prof["source"] if prof else self.base_source,
        }

    def on(self, dk: str) -> dict:
        """The Task fields that put design ``dk`` on this set."""
        out: dict = {"profiles": self.profiles.get(dk)}
        if not self.own:
            out["model"] = self.model
        return out

    def design(self, cfg: dict, dk: str):
        d = cfg["designs"][dk]
        shown = self.displays.get(dk)
        return replace(d, display=shown) if shown and shown != d.display else d


def design_gpus(d: schemas.DesignConf) -> list[str]:
    """The profile gpu keys of a design's machines (machine specs' ``profile_gpu``)."""
    from characterize.modeling.specs import load_machine

    return [load_machine(s).profile_gpu for s in d.machine_specs]


def _set_spec(p: schemas.ProfilesConf, **over):
    from characterize.modeling.profile_sets import COMPOSED_DIR, SetSpec

    return SetSpec(
        set=over.get("set", p.set),
        engine=over.get("engine", p.engine),
        engine_version=over.get("engine_version", p.engine_version),
        dtype=over.get("dtype", p.dtype),
        base=p.source if over.get("set", p.set) != "aic" else "",
        measured_dir=p.measured_dir,
        composed_dir=p.composed_dir or str(COMPOSED_DIR),
    )


def _resolve_run(cfg, name, spec, profiles, model, designs, ref_mode, own, notes) -> SetRun:
    """Resolve one set: its base (with the slowdown reference GPU when the SLO is relative to
    the set), then each design's GPUs on it (measured, else composed, else derived)."""
    from characterize.modeling.profile_sets import resolve
    from experiments import point

    out_dir, root = cfg["paths"].cache_dir, cfg["paths"].root
    tp = model.tp
    if spec.kind == "aic" or ref_mode == "set":
        ref_gpu = [profiles.slo_reference_gpu] if ref_mode == "set" else []
        base = resolve(spec, model.name, tp, ref_gpu, out_dir)
        ref_kind = base.kind_texts()
        spec = replace(spec, base=base.path)
        ref_src = base.path if ref_mode == "set" else profiles.slo_reference_source
        profiles = replace(profiles, source=base.path, slo_reference_source=ref_src)
    ref_text = (
        f"the set's own {profiles.slo_reference_gpu} tp{profiles.slo_reference_tp} "
        f"({ref_kind.get(profiles.slo_reference_gpu, '?')})"
        if ref_mode == "set"
        else f"{profiles.slo_reference_gpu} tp{profiles.slo_reference_tp} of "
        f"'{profiles.slo_reference_source}'"
        + (" (the paper's DGX-A100: fixed per-request targets)"
           if profiles.slo_reference_source == "reference" else "")
    )  # fmt: skip
    run = SetRun(name, spec.label(), model, list(designs), {}, {}, ref_text, own)
    run.base_source = profiles.source
    added: dict[tuple[str, str], list[str]] = {}  # (gpu, kind) -> designs
    sources: dict[tuple[str, str], object] = {}
    for dk in designs:
        pset = resolve(spec, model.name, tp, design_gpus(cfg["designs"][dk]), out_dir, quiet=True)
        run.kinds[dk] = pset.kind_texts()
        if pset.path != profiles.source or not own:
            run.profiles[dk] = point.profiles_identity(replace(profiles, source=pset.path))
        else:
            run.profiles[dk] = None
        for gpu, src in pset.gpus.items():
            if src.kind in ("measured", "derived") and _row_gpu_added(spec, src):
                added.setdefault((gpu, src.kind), []).append(dk)
                sources[(gpu, src.kind)] = src
        if any(k == "derived" for k in run.kinds[dk].values()):
            d = cfg["designs"][dk]
            if "derived" not in (d.display or dk):
                run.displays[dk] = f"{d.display or dk} (derived)"
    if own:  # every table and figure shows them as derived
        for dk, shown in run.displays.items():
            cfg["designs"][dk] = replace(cfg["designs"][dk], display=shown)
        cfg["profiles"] = profiles
    for (gpu, kind), dks in added.items():
        notes.append(_added_note(gpu, kind, dks, sources[(gpu, kind)], spec, profiles, model, root))
    return run


def _row_gpu_added(spec, src) -> bool:
    """Whether a GPU's rows were added to the set's base (not base rows of that kind)."""
    return src.kind == "derived" or (spec.kind == "aic" or spec.base == "reference")


def _added_note(gpu, kind, designs, src, spec, profiles, model, root) -> str:
    """The note the report prints for a GPU whose rows the set's base lacked."""
    import re

    g = gpu.split("-")[0].upper() + ("-pcap" if gpu.endswith("-pcap") else "")  # power-capped
    if kind == "measured":
        return (
            f"{g} designs use the measured {g} rows of "
            f"{', '.join(_shown(p, root) for p in src.tables)} "
            f"(with the `{spec.label()}` profiles for the other machines and the slowdown "
            "reference); another engine than the set's may have measured them: compare with care"
        )
    m = re.search(r"\((\S+) -> ", src.source)
    frm = m.group(1).split("-")[0].upper() if m else "closest"
    shown = _shown(profiles.measured_dir, root)
    composed = ", and no composed one" if spec.kind == "aic" else ""
    which = "reference" if spec.kind == "paper" and spec.base == "reference" else spec.label()
    return (
        f"{g} designs ({', '.join(designs)}) run on DERIVED profiles, not measurements: no "
        f"measured {g} profile of {model.name} under {shown}{composed}, so "
        f"characterize.modeling.derive scaled the {frm} {which} profile by the {g} spec "
        f"at the efficiencies the {frm} achieved (held-out error of that method, A100<->H100 "
        "on the reference data: decode MAPE 2.6-12.1%, prefill 9.7-30.0%; "
        f"`splitbench-profiles derive --check`); measured {g} profiles replace them automatically"
    )


def profile_runs(cfg: dict, notes: list[str]) -> list[SetRun]:
    """The study's profile sets, resolved: its own (``profiles``: ``study.designs`` and
    ``study.extra_designs``) and each of ``study.profile_sets``. Each GPU a design needs comes
    from the set (characterize.modeling.profile_sets: measured, else composed, else derived);
    a design whose GPUs the set's base covers keeps the base's profiles (and cache keys).
    ``cfg["profiles"]`` becomes the own set's resolved base."""
    st: schemas.StudySpec = cfg["study"]
    p = cfg["profiles"]
    designs = list(dict.fromkeys([*st.designs, *st.extra_designs]))
    labelled = bool(st.profile_sets)
    ref_mode = "set" if p.slo_reference_source == "set" else "fixed"
    spec = _set_spec(p)
    name = spec.kind if spec.kind == "paper" else f"{p.engine}-{p.dtype}"
    own = _resolve_run(cfg, name, spec, p, cfg["model"], designs, ref_mode, True, notes)
    own.labelled = labelled
    runs = [own]
    for i, ps in enumerate(st.profile_sets):
        for j, d in enumerate(ps.designs):
            if d not in cfg["designs"]:
                raise ExperimentError(
                    f"study.profile_sets[{i}].designs[{j}]: unknown value '{d}' "
                    f"(known: {', '.join(cfg['designs'])})"
                )
        schemas.check_set(ps, f"study.profile_sets[{i}]", p.composed_dir)
        model = replace(cfg["model"], name=ps.model or cfg["model"].name, display="")
        spec = _set_spec(p, set=ps.set, engine=ps.engine, engine_version=ps.engine_version,
                         dtype=ps.dtype)  # fmt: skip
        if spec.kind == "paper":
            spec = replace(spec, base="reference")
        base = replace(p, set=ps.set, engine=ps.engine, engine_version=ps.engine_version,
                       dtype=ps.dtype, source="reference",
                       slo_reference_source="reference")  # fmt: skip
        mode = "set" if ps.slo_reference == "set" else "fixed"
        run = _resolve_run(cfg, ps.name, spec, base, model, ps.designs, mode, False, notes)
        run.labelled = True
        runs.append(run)
    for run in runs:
        if run.labelled or run.text != "paper":  # the default study keeps its notes
            kinds = "; ".join(
                f"{g}: {k}" for g, k in sorted({x for d in run.kinds.values() for x in d.items()})
            )
            notes.append(
                f"profile set '{run.name}' = {run.text}, {run.model.name}: {kinds}; slowdown "
                f"reference: {run.slo_reference}"
            )
    return runs


def _shown(path: str, root: str) -> str:
    """``path`` relative to the project root when inside it (reports stay portable)."""
    rel = os.path.relpath(path, root)
    return path if rel.startswith("..") else rel
