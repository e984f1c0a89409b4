"""The serving component: what a served request pays beyond the engine's iterations.

The phase model (:mod:`characterize.modeling.phase_model`) prices one engine iteration alone.
A deployment behind an HTTP API server (and, disaggregated, behind a proxy) adds latency and
per-iteration work that the phase model does not see. :class:`ServingConfig` (the config group
``serving``) names each term explicitly; every term is zero by default, and with every term
zero a replay is byte-identical to one without this component (the GPU studies, whose phase
models are engine-only, do not change unless a user sets a term). docs/serving.md says how each
term is measured by a probe on the served path.

Terms (seconds; L = the request's prompt tokens, B = the requests of one iteration):

- ``arrival_s + arrival_s_per_token * L``: **arrival delay**, from the client's send to the
  request's arrival at the engine's scheduler (HTTP, the API server, the prompt's token ids
  through its IPC). Latency, not engine time: the request reaches the scheduler this much later
  (requests are routed and queued in order of that time, so a per-token term may reorder
  arrivals that are close).
- ``delivery_s``: **delivery offset**, from the engine's output of a token to the client's
  receipt of it (output processing, the stream's chunk). It shifts the first token, and with it
  every later token of the stream by the same constant: TTFT and E2E grow by ``delivery_s``, TBT
  does not change. The per-request client-visible latency of a lone request is
  ``alpha(L) = alpha0 + alpha1 * L`` with ``alpha0 = arrival_s + delivery_s`` and
  ``alpha1 = arrival_s_per_token`` (the prompt-proportional part is before the scheduler).
- ``iteration_s + iteration_s_per_request * B``: **served per-iteration overhead**
  (delta(B) = delta0 + delta1 * B: IPC, output processing and streaming sharing the engine's
  CPU), added to the duration of EVERY iteration by every machine policy (``reference`` and
  ``vllm``, prefill, mixed and decode iterations): it occupies the engine, so it moves capacity.
  B counts the requests the iteration serves: its decodes plus its prefill pieces (prompts).
- Disaggregated path (a Splitwise design run with the ``vllm`` policy, which models vLLM's
  disaggregated serving: replay.vllm_policy):
  - ``prefill_leg_s + prefill_leg_s_per_token * L``: the proxy's leg to the prefill instance,
    added to the arrival delay (latency);
  - ``decode_leg_s + decode_leg_s_per_token * L``: from the end of the prefill instance's step
    to the request's arrival at the decode instance's scheduler (the prefill response back to
    the proxy, the decode request through the decode instance's API server; latency). The KV
    link (``scheduler.kv_transfer``) runs in parallel from the same instant and should carry
    only the pure hop (bytes over the link's rate: ``per_token_s`` null, ``handover_s`` 0; the
    link is FIFO, so a fixed hand-over latency belongs here, not in ``handover_s``); the
    request enters the decode instance's queue when both are done;
  - ``kv_save_s + kv_save_s_per_token * L``: **work on the prefill instance**: the connector's
    store of the prompt's KV, added to the duration of the step that computes the prompt (per
    prompt and per prompt token of the step; a Splitwise design's prompt machines), so it holds
    back the prompts queued behind it;
  - ``kv_load_s + kv_load_s_per_token * injected``: **work on the decode instance**: the KV load
    of the injected (whole-block) prompt tokens, added to the duration of the iteration that
    schedules the request's tail, so it stalls the decodes running there. The tail (the prompt
    tokens after the last whole block, ``L - block_size * floor((L - 1) / block_size)``, 1 to
    block_size tokens: at least the last token is recomputed to sample from) is recomputed in
    that iteration as a prefill chunk priced by the decode instance's phase model.
  - ``decode_work_s + decode_work_s_per_token * L``: **work on the decode instance** per
    hand-over: the decode leg's processing where it runs on the decode engine's cores (the
    decode instance's API server taking the proxy's request: parsing, the prompt's token ids,
    the hand-off to the engine, on a CPU deployment whose server shares the engine's core),
    added, like the KV load, to the duration of the iteration that admits the hand-over
    (every hand-over, with or without whole blocks to load). The validation measures the
    decode leg once (the KV calibration) and places it here or in ``decode_leg_*``
    (``simulate.decode_leg_as``), never both.
- ``arrival_work_s + arrival_work_s_per_token * L``: **work on a co-located instance** per
  request, added to the iteration that first admits it (a vllm-policy co-located design only):
  the request path's processing where the API server shares the engine's cores. The validation
  measures that path once (alpha's arrival terms) and places it here or in ``arrival_*``
  (``simulate.arrival_as``), never both.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

from replay.errors import need


def _f(default, help: str):  # noqa: A002 - "help" is the documented name
    return field(default=default, metadata={"help": help})


#: the terms of the disaggregated path (they need the vllm policy on a Splitwise design)
DISAGGREGATED = (
    "prefill_leg_s", "prefill_leg_s_per_token", "decode_leg_s", "decode_leg_s_per_token",
    "kv_load_s", "kv_load_s_per_token", "kv_save_s", "kv_save_s_per_token",
    "decode_work_s", "decode_work_s_per_token",
)  # fmt: skip


@dataclass(frozen=True)
class ServingConfig:
    """The serving component's terms (the ``serving`` config group; seconds, zeros by default)."""

    arrival_s: float = _f(
        0.0, "fixed delay from the client's send to the engine's scheduler, s (part of alpha0)"
    )
    arrival_s_per_token: float = _f(
        0.0, "arrival delay per prompt token, s (alpha1: request body, token ids through IPC)"
    )
    delivery_s: float = _f(
        0.0,
        "delay from the engine's output of a token to the client, s (the rest of alpha0; shifts "
        "TTFT and E2E, not TBT)",
    )
    iteration_s: float = _f(
        0.0, "served overhead added to every iteration's duration, s (delta0; engine time)"
    )
    iteration_s_per_request: float = _f(
        0.0, "served overhead per request in the iteration, s (delta1; decodes + prefill pieces)"
    )
    prefill_leg_s: float = _f(
        0.0, "disaggregated: the proxy's leg to the prefill instance, s (added to the arrival)"
    )
    prefill_leg_s_per_token: float = _f(0.0, "disaggregated: prefill leg per prompt token, s")
    decode_leg_s: float = _f(
        0.0,
        "disaggregated: prefill instance's step end -> the decode instance's scheduler, s "
        "(latency; the KV link runs in parallel)",
    )
    decode_leg_s_per_token: float = _f(0.0, "disaggregated: decode leg per prompt token, s")
    kv_load_s: float = _f(
        0.0, "disaggregated: decode-instance work per hand-over (KV load), s (stalls its decodes)"
    )
    kv_load_s_per_token: float = _f(
        0.0, "disaggregated: decode-instance work per injected (KV-loaded) prompt token, s"
    )
    kv_save_s: float = _f(
        0.0, "disaggregated: prefill-instance work per stored prompt (the connector's KV save), s"
    )
    kv_save_s_per_token: float = _f(
        0.0, "disaggregated: prefill-instance work per stored prompt token, s"
    )
    arrival_work_s: float = _f(
        0.0,
        "co-located (vllm policy): work per request on the instance that first admits it (the "
        "request path's processing on the engine's cores), s (stalls its decodes)",
    )
    arrival_work_s_per_token: float = _f(
        0.0, "co-located: arrival work per prompt token of the admitted request, s"
    )
    decode_work_s: float = _f(
        0.0,
        "disaggregated: decode-instance work per admitted hand-over (the decode leg's processing "
        "on the decode engine's cores), s (stalls its decodes)",
    )
    decode_work_s_per_token: float = _f(
        0.0, "disaggregated: decode-instance work per admitted hand-over's prompt token, s"
    )

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            need(ok and v >= 0, f"serving.{f.name}", f"must be a finite number >= 0, got {v!r}")

    @property
    def is_zero(self) -> bool:
        """Every term zero: the replay is exactly the engine-only one."""
        return not any(getattr(self, f.name) for f in fields(self))

    @property
    def disaggregated(self) -> bool:
        """Some term of the disaggregated path is set."""
        return any(getattr(self, k) for k in DISAGGREGATED)

    @property
    def has_iteration_overhead(self) -> bool:
        return bool(self.iteration_s or self.iteration_s_per_request)

    def arrival_delay(self, prompt_tokens: int, split: bool = False) -> float:
        """Seconds from the client's send to the (prefill) scheduler for a prompt of L tokens;
        ``split``: through the proxy's prefill leg too."""
        d = self.arrival_s + self.arrival_s_per_token * prompt_tokens
        if split:
            d += self.prefill_leg_s + self.prefill_leg_s_per_token * prompt_tokens
        return d

    def to_dict(self) -> dict:
        return asdict(self)


#: how the report names each term (value in seconds; the unit follows)
_LABELS = (
    ("arrival_s", "arrival", "s"), ("arrival_s_per_token", "arrival", "s/prompt token"),
    ("delivery_s", "delivery", "s"), ("iteration_s", "per-iteration", "s"),
    ("iteration_s_per_request", "per-iteration", "s/request"),
    ("prefill_leg_s", "prefill leg", "s"), ("prefill_leg_s_per_token", "prefill leg",
                                            "s/prompt token"),
    ("decode_leg_s", "decode leg", "s"), ("decode_leg_s_per_token", "decode leg",
                                          "s/prompt token"),
    ("kv_load_s", "KV load", "s/hand-over"), ("kv_load_s_per_token", "KV load",
                                              "s/injected token"),
    ("kv_save_s", "KV save", "s/prompt"), ("kv_save_s_per_token", "KV save", "s/prompt token"),
    ("arrival_work_s", "arrival work", "s/request"),
    ("arrival_work_s_per_token", "arrival work", "s/prompt token"),
    ("decode_work_s", "decode-instance hand-over work", "s/hand-over"),
    ("decode_work_s_per_token", "decode-instance hand-over work", "s/prompt token"),
)  # fmt: skip


def describe(terms: dict | None) -> str:
    """One line for a report: the serving component's values (a ``ServingConfig.to_dict()``;
    None or every term zero: says so)."""
    terms = terms or {}
    set_ = [(label, terms[k], unit) for k, label, unit in _LABELS if terms.get(k)]
    if not set_:
        return (
            "Serving component (replay.serving): every term zero (the default): no client-visible "
            "latency, served per-iteration overhead or decode-instance hand-over work beyond the "
            "phase models and the KV link."
        )
    parts = ", ".join(f"{label} {v:.6g} {unit}" for label, v, unit in set_)
    return f"Serving component (replay.serving): {parts}; every other term zero."


def tail_tokens(prompt_tokens: int, block_size: int) -> int:
    """Prompt tokens a decode instance recomputes after a hand-over: those after the last whole
    block of the first L - 1 tokens (1..block_size; the KV connector injects whole blocks and
    the last prompt token is always computed, to sample the first output token from)."""
    return prompt_tokens - (prompt_tokens - 1) // block_size * block_size


__all__ = ["DISAGGREGATED", "ServingConfig", "describe", "tail_tokens"]
