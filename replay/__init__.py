"""replay: discrete-event cluster simulator for baseline and Splitwise (phase-split) designs.

Quick use::

    from replay import simulate, splitwise, SchedulerConfig
    design = splitwise("dgx-h100", "dgx-h100", 4, 2, "llama2-70b")   # Splitwise-HH, 4P + 2T
    result = simulate(trace_df, design)           # phase models: load_phase_models("reference")
    print(result.format_summary()); result.write("runs/hh")

Never imports torch, transformers, seaborn, hydra or omegaconf. The named designs live in
experiments/conf/design/*.yaml. Modules: scheduler (options), designs (nodes and instances),
kv_transfer, serving (what a served deployment adds to the engine's iterations), slo, metrics
(definitions), summary (the one summary), simulate (wiring), and the engine (event_loop,
routing, machine: the paper's machine policy ``reference``, vllm_policy: vLLM V1's scheduler
``vllm``, also as vLLM's disaggregated serving on a Splitwise design; chosen per design with
``design.machine_policy``).
"""

from replay import _core

_core.install()  # the compiled core or the Python source (replay/_core.py), before the engine loads

from replay.designs import Design, DesignConfig, baseline, make_design, splitwise
from replay.errors import DesignError, ReplayError
from replay.kv_transfer import KVTransferConfig
from replay.phase import LinearPhaseModel
from replay.scheduler import SchedulerConfig
from replay.serving import ServingConfig
from replay.simulate import ReplayResult, simulate
from replay.slo import SLO
from replay.summary import ReplaySummary, format_summary

core_status = _core.status  # which build of the engine runs: {"core": ..., "why": ...}

__all__ = [
    "core_status",
    "SLO",
    "Design",
    "DesignConfig",
    "ReplaySummary",
    "baseline",
    "splitwise",
    "DesignError",
    "KVTransferConfig",
    "LinearPhaseModel",
    "ReplayError",
    "ReplayResult",
    "SchedulerConfig",
    "ServingConfig",
    "format_summary",
    "make_design",
    "simulate",
]
