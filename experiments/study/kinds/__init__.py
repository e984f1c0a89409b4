"""The task kinds of a study, one class per file: each owns its search, its progress line and
its rows (:class:`~experiments.study.kinds.base.Kind`). Variants (``variants.py``) are not a
search of their own: budget or fixed tasks under changed settings, with their own rows.

To add a study kind: a file here with its class, its name in :data:`KINDS`, its planning in
``experiments/study/plan.py`` and, for a new table, its name in ``experiments/study/tables.py``.
"""

from __future__ import annotations

from experiments.study.kinds.base import Kind
from experiments.study.kinds.batch import BatchKind
from experiments.study.kinds.budget import BudgetKind
from experiments.study.kinds.fixed import FixedKind
from experiments.study.kinds.heatmap import HeatmapKind
from experiments.study.kinds.load import LoadKind
from experiments.study.kinds.throughput import ThroughputKind

#: every task kind by its name (``Task.kind``)
KINDS: dict[str, Kind] = {
    k.name: k
    for k in (BudgetKind(), ThroughputKind(), HeatmapKind(), FixedKind(), LoadKind(), BatchKind())
}


def kind_of(task) -> Kind:
    """The kind of ``task`` (ExperimentError for an unknown name)."""
    from experiments.errors import ExperimentError

    try:
        return KINDS[task.kind]
    except KeyError:
        raise ExperimentError(f"study: unknown task kind '{task.kind}'") from None
