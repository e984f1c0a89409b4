"""What is measured on the deployment before the replays: ``calibrate`` (the KV transfer through
the proxy), ``probes`` (the serving component's terms) and ``profile`` (the instances' phases)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from experiments.validation.schema.checks import at_least, need, pos

PROFILE_MODES = ("measure", "source", "skip")


@dataclass
class CalibrateConf:
    """KV transfer through the proxy (splitwise only); KV bytes per token from the model spec."""

    enabled: bool = True
    lengths: list[int] = field(default_factory=lambda: [129, 250, 384, 700, 1025, 1500])
    repeats: int = 3
    block_size: int = 128  # vLLM's CPU default (16 on a GPU): whole blocks are injected

    def check(self, max_model_len: int, key: str = "calibrate") -> None:
        for i, L in enumerate(self.lengths):
            need(isinstance(L, int) and not isinstance(L, bool), f"{key}.lengths[{i}]",
                 f"must be an integer, got {L!r}")  # fmt: skip
        need(len(set(self.lengths)) >= 2, f"{key}.lengths",
             "needs at least two distinct prompt lengths")  # fmt: skip
        for i, L in enumerate(self.lengths):
            need(2 <= L < max_model_len - 2, f"{key}.lengths[{i}]",
                 f"must be in 2..deploy.max_model_len - 3 ({max_model_len - 3}), got {L}")  # fmt: skip
        at_least(self.repeats, 1, f"{key}.repeats")
        at_least(self.block_size, 1, f"{key}.block_size")


@dataclass
class ProbesConf:
    """The serving probes (:mod:`experiments.validation.probes`): the serving component's terms
    (docs/serving.md) measured on the running deployment, after the calibration and before the
    replays, on their own prompt ids; never fitted on the replays compared."""

    enabled: bool = True
    # alpha: one request at a time, one output token, at each prompt length
    alpha_lengths: list[int] = field(default_factory=lambda: [16, 128, 384, 768, 1536])
    alpha_repeats: int = 3
    # delta: N concurrent streams (N = 1: the one long stream), each of output_tokens tokens
    delta_streams: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16, 32])
    delta_prompt_tokens: int = 32
    delta_output_tokens: int = 64
    # hand-over stall (splitwise): prompts injected through the proxy into N running streams
    # on the decode instance
    stall_streams: int = 4
    stall_lengths: list[int] = field(default_factory=lambda: [250, 700, 1500])
    stall_repeats: int = 2
    timeout_s: float = 600.0  # bound on every probe of one design
    # the speed sentinel before each real run (experiments.validation.sentinel): the delta
    # probe's run of the most streams it ran up to this many, again; 0: none
    sentinel_streams: int = 8
    # and the same again right after the run: the rung's factor is the mean of the two (the
    # engine's speed across the rung, not only before it); false: before only
    sentinel_after: bool = True

    def check(self, max_model_len: int, max_num_seqs: int, key: str = "probes") -> None:
        for name in ("alpha_lengths", "delta_streams", "stall_lengths"):
            vals = getattr(self, name)
            need(isinstance(vals, list) and len(vals) > 0, f"{key}.{name}",
                 "must be a non-empty list")  # fmt: skip
            for i, v in enumerate(vals):
                at_least(v, 1, f"{key}.{name}[{i}]")
        need(len(set(self.alpha_lengths)) >= 2, f"{key}.alpha_lengths",
             "needs at least two distinct prompt lengths (a line in L)")  # fmt: skip
        need(len(set(self.delta_streams)) >= 2, f"{key}.delta_streams",
             "needs at least two distinct stream counts (a line in B)")  # fmt: skip
        for name in ("alpha_lengths", "stall_lengths"):
            for i, L in enumerate(getattr(self, name)):
                need(L < max_model_len - 2, f"{key}.{name}[{i}]",
                     f"must be < deploy.max_model_len - 2 ({max_model_len - 2}), got {L}")  # fmt: skip
        # N above an engine's max_num_seqs would queue (B < N): those N are not run
        need(len({n for n in self.delta_streams if n <= max_num_seqs}) >= 2,
             f"{key}.delta_streams", "needs two distinct stream counts <= the instances' "
             f"max_num_seqs ({max_num_seqs})")  # fmt: skip
        at_least(self.alpha_repeats, 1, f"{key}.alpha_repeats")
        at_least(self.stall_repeats, 1, f"{key}.stall_repeats")
        at_least(self.stall_streams, 1, f"{key}.stall_streams")
        at_least(self.delta_prompt_tokens, 1, f"{key}.delta_prompt_tokens")
        at_least(self.delta_output_tokens, 4, f"{key}.delta_output_tokens")
        need(self.delta_prompt_tokens + self.delta_output_tokens < max_model_len,
             f"{key}.delta_output_tokens", "prompt + output must fit deploy.max_model_len")  # fmt: skip
        pos(self.timeout_s, f"{key}.timeout_s")
        at_least(self.sentinel_streams, 0, f"{key}.sentinel_streams")
        need(isinstance(self.sentinel_after, bool), f"{key}.sentinel_after",
             f"must be true or false, got {self.sentinel_after!r}")  # fmt: skip
        need(self.sentinel_streams == 0 or self.sentinel_streams >= min(self.delta_streams),
             f"{key}.sentinel_streams", f"must be 0 or >= the fewest probes.delta_streams "
             f"({min(self.delta_streams)}), got {self.sentinel_streams}")  # fmt: skip


@dataclass
class ProfileConf:
    mode: str = "measure"  # measure (splitbench-characterize engine=vllm) | source | skip
    source: str | None = None  # mode=source: an existing profile CSV or folder
    overrides: list[str] = field(default_factory=lambda: ["power=off", "sweep=vllm-validate"])
    # measure: a profile per design, measured right before its block (the machine's speed
    # drifts); false: one profile for every design with the same instance settings
    per_design: bool = True

    def check(self, key: str = "profile") -> None:
        need(self.mode in PROFILE_MODES, f"{key}.mode",
             f"must be measure, source or skip, got '{self.mode}'")  # fmt: skip
        if self.mode == "source":
            src = self.source
            need(bool(src), f"{key}.source", "must be set when profile.mode=source")
            need(src == "reference" or Path(src).exists(), f"{key}.source", f"{src}: not found")
