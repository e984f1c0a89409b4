"""Sets of phase models: every (model, gpu, tp) of a profile source, fitted on first use, and
the slowdown reference machine; :func:`load_phase_models` reads a source."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from functools import cache, partial

import pandas as pd

from characterize.modeling.phase.adjust import AdjustedSet, PhaseAdjust
from characterize.modeling.phase.errors import PhaseModelError
from characterize.modeling.phase.fit import fit_phase_model
from characterize.modeling.phase.model import PhaseModel
from characterize.modeling.profiles import machine_profiles, read_profile_source, reference_profiles

#: the slowdown reference machine of the paper: DGX-A100, TP8 (DESIGN.md, Metrics)
REFERENCE_GPU = "a100-80gb"
REFERENCE_TP = 8


class PhaseModelSet:
    """All PhaseModels fitted from one profile source, keyed by (model, gpu, tp)."""

    def __init__(
        self,
        models: Iterable[PhaseModel] = (),
        source: str = "",
        *,
        pending: Mapping[tuple[str, str, int], Callable[[], PhaseModel]] | None = None,
        reference: str | PhaseModelSet | None = "reference",
        reference_gpu: str = REFERENCE_GPU,
        reference_tp: int = REFERENCE_TP,
        tables: Sequence[str] = (),
    ) -> None:
        """``models`` are fitted already; ``pending`` maps further keys to the fit that makes
        them, run on first use (a replay needs two or three of a source's models, so the
        others are never fitted).

        ``reference`` (a profile source for :func:`load_phase_models`, a set, or None for this
        set itself), ``reference_gpu`` and ``reference_tp`` name the slowdown reference machine
        (:meth:`reference_model`); ``tables``: the profile files this set was fitted from."""
        self._models = {(m.model, m.gpu, m.tp): m for m in models}
        self._pending = dict(pending or {})
        self._aliased: dict[tuple[str, str, int], PhaseModel] = {}
        self.source = source
        self.reference = reference
        self.reference_gpu = str(reference_gpu)
        self.reference_tp = int(reference_tp)
        self.tables = [str(t) for t in tables]

    def reference_set(self) -> PhaseModelSet:
        """The set the slowdown reference comes from (this one when ``reference`` is None or
        names this set's own source)."""
        ref = self.reference
        if ref is None or (isinstance(ref, str) and ref == self.source):
            return self
        if isinstance(ref, PhaseModelSet):
            return ref
        return load_phase_models(ref, reference=None)

    def reference_model(self, model: str) -> PhaseModel:
        """The slowdown-reference PhaseModel of ``model``: ``reference_gpu`` at ``reference_tp``
        (default DGX-A100 TP8) from the ``reference`` profiles (default: the paper's reference
        profiles). A one-line :class:`PhaseModelError` when that profile has no such model."""
        ref = self.reference_set()
        key = (model, self.reference_gpu, self.reference_tp)
        if key in ref or ref._alias(key) is not None:
            return ref.get(*key)
        have = ", ".join(f"{m}/{g}/tp{t}" for m, g, t in ref.keys() if m == model) or "none"
        raise PhaseModelError(
            f"no slowdown reference {model}/{self.reference_gpu}/tp{self.reference_tp} in "
            f"profiles '{ref.source}' (have for {model}: {have}); name another reference "
            "(profiles.slo_reference_source, slo_reference_gpu, slo_reference_tp)"
        )

    def keys(self) -> list[tuple[str, str, int]]:
        """The (model, gpu, tp) combinations of this source, sorted."""
        return sorted({*self._models, *self._pending})

    def __contains__(self, key: object) -> bool:
        return key in self._models or key in self._pending

    def __len__(self) -> int:
        return len(self.keys())

    def __iter__(self):
        return iter(self._fitted(k) for k in self.keys())

    def _fitted(self, key: tuple[str, str, int]) -> PhaseModel:
        model = self._models.get(key)
        if model is None:
            model = self._models[key] = self._pending.pop(key)()
        return model

    def _alias(self, key: tuple[str, str, int]) -> tuple[str, str, int] | None:
        """The key whose profiles stand in for ``key``: the model spec's ``profile_model`` (a
        model with the same layer shapes, e.g. Llama-3.1-70B -> Llama-2-70B; the spec states
        what that assumes), when this set has it and not ``key`` itself."""
        from characterize.modeling.specs import SpecError, load_model

        try:
            alias = load_model(key[0]).phase_profile_model
        except SpecError:
            return None
        akey = (alias, key[1], key[2])
        return akey if alias != key[0] and akey in self else None

    def get(self, model: str, gpu: str, tp: int = 8) -> PhaseModel:
        """The PhaseModel of (model, gpu, tp); a one-line :class:`PhaseModelError` if absent.

        A model whose spec borrows another's profiles (``profile_model``) gets that model's
        fit, relabelled: ``source`` says "(profiles of <other>)" wherever it is shown."""
        key = (model, gpu, int(tp))
        if key in self._aliased:
            return self._aliased[key]
        if key not in self and (akey := self._alias(key)) is not None:
            base = self._fitted(akey)
            # kept apart from the set's own fits: keys() and error_table() stay the source's
            self._aliased[key] = replace(
                base, model=model, source=f"{base.source} (profiles of {akey[0]})"
            )
            return self._aliased[key]
        try:
            return self._fitted(key)
        except KeyError:
            have = ", ".join(f"{m}/{g}/tp{t}" for m, g, t in self.keys()) or "none"
            raise PhaseModelError(
                f"no phase model for {model}/{gpu}/tp{tp} in profiles '{self.source}' "
                f"(have: {have})"
            ) from None

    def error_table(self) -> pd.DataFrame:
        """Held-out errors: model, gpu, tp, phase, points, mape, max_error (fractions), plus
        fit_mape (in-sample), outliers, power_source, power_points, power_mape,
        power_max_error, note."""
        cols = ["model", "gpu", "tp", "phase", "points", "mape", "max_error", "fit_mape",
                "outliers", "power_source", "power_points", "power_mape", "power_max_error",
                "note"]  # fmt: skip
        rows = [
            {c: r.get(c) for c in cols}
            for m in self
            for r in m.fit_report()
            if r.get("kind", "").startswith("held-out")
        ]
        return pd.DataFrame(rows, columns=cols)


def fit_all(
    profiles: pd.DataFrame,
    source: str = "",
    *,
    reference: str | PhaseModelSet | None = "reference",
    reference_gpu: str = REFERENCE_GPU,
    reference_tp: int = REFERENCE_TP,
    tables: Sequence[str] = (),
    **opts,
) -> PhaseModelSet:
    """Every (model, gpu, tp) of a (validated) profile table, each fitted on first use;
    ``reference*`` / ``tables`` as in :class:`PhaseModelSet`, ``opts`` go to
    :func:`fit_phase_model`."""
    keys = sorted(
        {(m, g, int(t)) for m, g, t in profiles[["model", "gpu", "tp"]].itertuples(index=False)}
    )
    return PhaseModelSet(
        source=source,
        reference=reference,
        reference_gpu=reference_gpu,
        reference_tp=reference_tp,
        tables=tables,
        pending={
            (m, g, t): partial(fit_phase_model, profiles, m, g, t, source=source, **opts)
            for m, g, t in keys
        },
    )


@cache
def _source_set(source: str, decode_terms: tuple[str, ...] | None = None) -> PhaseModelSet:
    """The fits of one profile source, its own reference (cached in-process per source and
    decode terms; None: every term)."""
    opts = {} if decode_terms is None else {"decode_terms": decode_terms}
    if source == "reference":
        return fit_all(reference_profiles(), source="reference", reference=None, **opts)
    table, files = read_profile_source(source)
    return fit_all(machine_profiles(table), source=source, reference=None, tables=files, **opts)


def load_phase_models(
    source: str = "reference",
    reference: str | None = "reference",
    reference_gpu: str = REFERENCE_GPU,
    reference_tp: int = REFERENCE_TP,
    adjust: PhaseAdjust | None = None,
) -> PhaseModelSet:
    """Fit all PhaseModels of a profile source (each on first use; cached in-process).

    ``source``: 'reference' (the bundled Splitwise data), a profile CSV, or a folder (every
    measured table under it, recursively, merged: :func:`read_profile_source`); bad tables
    raise :class:`ProfileError`. ``reference`` / ``reference_gpu`` / ``reference_tp`` name the
    slowdown reference (:meth:`PhaseModelSet.reference_model`): by default DGX-A100 TP8 of the
    paper's reference profiles; ``reference=None`` takes it from ``source`` itself.

    The fits model whole TP instances: rows a CSV holds as one-GPU TP-shard measurements (the
    suite's profiler) get the DGX all-reduce time first (:func:`machine_profiles`).

    ``adjust``: a modelling assumption other than the plain fit
    (:class:`~characterize.modeling.phase.adjust.PhaseAdjust`); the set's models carry it, its
    slowdown reference does not (:class:`~characterize.modeling.phase.adjust.AdjustedSet`)."""
    if adjust is not None and not adjust.is_identity:
        plain = load_phase_models(source, reference, reference_gpu, reference_tp)
        if adjust.decode_batch_sq:
            return AdjustedSet(plain, adjust, plain)
        refit = _source_set(str(source), adjust.decode_terms)
        return AdjustedSet(refit, adjust, plain)
    base = _source_set(str(source))
    ref = None if reference is None or str(reference) == str(source) else str(reference)
    if (
        ref is None
        and base.reference is None
        and (reference_gpu, int(reference_tp))
        == (
            REFERENCE_GPU,
            REFERENCE_TP,
        )
    ):
        return base
    out = PhaseModelSet(
        source=base.source,
        reference=ref,
        reference_gpu=reference_gpu,
        reference_tp=reference_tp,
        tables=base.tables,
    )
    out._models, out._pending = base._models, base._pending  # share the fits (and the cache)
    return out
