"""``load_defaults`` and each entry of ``loads``: one load level (a trace, scaled to the served
model, re-sampled at a rate); :class:`LoadConf`'s null fields take the defaults'."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from experiments.validation.schema.checks import at_least, need, pos


@dataclass
class LoadDefaults:
    """What every load takes unless it sets its own."""

    trace: str = "azure-conv-2023"
    duration_s: float = 60.0
    prompt_scale: float = 0.25  # tokens = max(1, round(tokens x scale)), capped, clipped
    output_scale: float = 0.25
    max_prompt_tokens: int | None = 2048
    max_output_tokens: int | None = 256
    max_context: int | None = None  # null: deploy.max_model_len
    arrival: str = "poisson"
    cv: float = 1.0

    def check(self, key: str, max_model_len: int) -> None:
        from traces.bundled import list_traces
        from traces.transforms import ARRIVALS

        for k in ("trace", "arrival"):
            need(isinstance(getattr(self, k), str), f"{key}.{k}",
                 f"must be a string, got {getattr(self, k)!r}")  # fmt: skip
        known = list_traces()
        need(self.trace in known or Path(self.trace).is_file(), f"{key}.trace",
             f"unknown trace '{self.trace}' (known: {', '.join(known)}, or a file)")  # fmt: skip
        pos(self.duration_s, f"{key}.duration_s")
        pos(self.prompt_scale, f"{key}.prompt_scale")
        pos(self.output_scale, f"{key}.output_scale")
        at_least(self.max_prompt_tokens, 1, f"{key}.max_prompt_tokens", null=True)
        at_least(self.max_output_tokens, 1, f"{key}.max_output_tokens", null=True)
        if self.max_context is not None:
            need(2 <= self.max_context <= max_model_len, f"{key}.max_context",
                 f"must be in 2..deploy.max_model_len ({max_model_len}), got "
                 f"{self.max_context}")  # fmt: skip
        need(self.arrival in ARRIVALS, f"{key}.arrival",
             f"unknown arrival '{self.arrival}' (known: {', '.join(ARRIVALS)})")  # fmt: skip
        pos(self.cv, f"{key}.cv")


@dataclass
class LoadConf:
    """One load level: ``name`` and ``rate`` (req/s); every other field null takes
    ``load_defaults``'s."""

    name: str = ""
    rate: float | None = None
    trace: str | None = None
    duration_s: float | None = None
    prompt_scale: float | None = None
    output_scale: float | None = None
    max_prompt_tokens: int | None = None
    max_output_tokens: int | None = None
    max_context: int | None = None
    arrival: str | None = None
    cv: float | None = None

    def resolved(self, d: LoadDefaults) -> LoadDefaults:
        vals = {f.name: getattr(d, f.name) for f in fields(LoadDefaults)}
        vals.update({k: getattr(self, k) for k in vals if getattr(self, k) is not None})
        return LoadDefaults(**vals)
