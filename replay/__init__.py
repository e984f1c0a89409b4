"""replay: discrete-event cluster simulator for baseline and Splitwise (phase-split) designs.

Quick use::

    from replay import simulate, make_design, SchedulerConfig
    design = make_design("splitwise-hh", "llama2-70b", prompt_machines=4, token_machines=2)
    result = simulate(trace_df, design)           # phase models: load_phase_models("reference")
    print(result.format_summary()); result.write("runs/hh")

Never imports torch, transformers, seaborn or hydra. See replay/engine.py for the scheduler and
machine model, replay/kv_transfer.py for the transfer model, replay/metrics.py for the metrics.
"""

from replay.designs import DESIGNS, Design, make_design
from replay.engine import SchedulerConfig
from replay.errors import DesignError, ReplayError
from replay.kv_transfer import KVTransferConfig
from replay.metrics import format_summary
from replay.phase import LinearPhaseModel
from replay.simulate import ReplayResult, simulate

__all__ = [
    "DESIGNS",
    "Design",
    "DesignError",
    "KVTransferConfig",
    "LinearPhaseModel",
    "ReplayError",
    "ReplayResult",
    "SchedulerConfig",
    "format_summary",
    "make_design",
    "simulate",
]
