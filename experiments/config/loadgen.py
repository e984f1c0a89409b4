"""The load generator's own config groups (``splitbench-loadgen``: a trace against a server).

``target`` (the endpoint), ``lengths`` (token scaling after the trace transforms) and ``client``
(concurrency, timeouts, bounds, warm-up) are typed by these dataclasses, the groups of
:class:`experiments.config.schemas.LoadgenApp` in Hydra's ConfigStore, so a misspelt key or a
wrongly typed value fails at composition naming the key. Each checks its values when it is built
(:func:`experiments.config.checks.loadgen_config`): one line starting with the dotted key
(``client.max_outstanding: must be >= 1, got 0``). The trace is the shared ``trace`` group
(:class:`traces.transforms.TraceConfig`), as in a replay.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from experiments.config.fields import opt as _f
from experiments.errors import ExperimentError
from traces.transforms import TraceConfig

#: hosts that are this machine (anything else needs ``target.allow_remote``)
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def _need(cond: bool, key: str, msg: str) -> None:
    if not cond:
        raise ExperimentError(f"{key}: {msg}")


def _number(v: Any, key: str, *, lo=None, gt=None, null=False, integer=False) -> None:
    """One line naming ``key`` unless ``v`` is a number (an integer) >= lo / > gt (or None)."""
    if v is None:
        _need(null, key, "must be set")
        return
    kind = int if integer else int | float
    _need(
        not isinstance(v, bool) and isinstance(v, kind),
        key,
        f"must be {'an integer' if integer else 'a number'}, got {v!r}",
    )
    if lo is not None:
        _need(v >= lo, key, f"must be >= {lo}, got {v}")
    if gt is not None:
        _need(v > gt, key, f"must be > {gt}, got {v}")


@dataclass
class TargetConf:
    """Group ``target``: the OpenAI-compatible endpoint and how prompts are made for it."""

    name: str = _f("local", "run name of the target (the run folder's and the report's)")
    base_url: str = _f("http://127.0.0.1:8000", "http(s)://host:port of the server")
    model: str | None = _f(None, "served model name (None: the first /v1/models lists)")
    prompt_mode: str = _f("ids", "'ids' (exact-length token-id prompts) or 'text' (random words)")
    vocab_size: int = _f(32000, "random prompt ids are drawn from [min_token_id, vocab_size)")
    min_token_id: int = _f(100, "lowest prompt token id drawn")
    max_model_len: int = _f(4096, "the server's context: prompt + output fitted into it")
    ignore_eos: bool = _f(True, "ask the server to ignore end-of-sequence")
    min_tokens: bool = _f(True, "send min_tokens = max_tokens (vLLM honours it)")
    return_token_ids: bool = _f(True, "ask for the chunks' token ids (exact token counts; ids)")
    allow_remote: bool = _f(False, "allow a host other than this machine")

    def __post_init__(self) -> None:
        u = urlparse(str(self.base_url))
        _need(
            u.scheme in ("http", "https") and bool(u.hostname),
            "target.base_url",
            f"must be http(s)://host:port, got '{self.base_url}'",
        )
        _need(
            u.hostname in LOCAL_HOSTS or self.allow_remote,
            "target.base_url",
            f"'{u.hostname}' is not this machine (set target.allow_remote=true)",
        )
        _need(
            self.prompt_mode in ("ids", "text"),
            "target.prompt_mode",
            f"must be ids or text, got '{self.prompt_mode}'",
        )
        _number(self.vocab_size, "target.vocab_size", gt=0, integer=True)
        _number(self.min_token_id, "target.min_token_id", lo=0, integer=True)
        _need(
            self.min_token_id < self.vocab_size,
            "target.min_token_id",
            "must be below target.vocab_size",
        )
        _number(self.max_model_len, "target.max_model_len", lo=2, integer=True)


@dataclass
class LengthsConf:
    """Group ``lengths``: token counts scaled after the trace transforms (a big model's trace
    on a small model): ``tokens = max(1, round(tokens * scale))``, then capped."""

    prompt_scale: float = _f(1.0, "factor on every prompt length")
    output_scale: float = _f(1.0, "factor on every output length")
    max_prompt_tokens: int | None = _f(None, "cap on a prompt after scaling (None: none)")
    max_output_tokens: int | None = _f(None, "cap on an output after scaling (None: none)")

    def __post_init__(self) -> None:
        for k in ("prompt_scale", "output_scale"):
            _number(getattr(self, k), f"lengths.{k}", gt=0)
        for k in ("max_prompt_tokens", "max_output_tokens"):
            _number(getattr(self, k), f"lengths.{k}", lo=1, null=True, integer=True)


@dataclass
class ClientConf:
    """Group ``client``: how the load is sent."""

    max_outstanding: int = _f(64, "requests in flight at most (a due request waits: lag)")
    request_timeout_s: float = _f(120.0, "s: a whole request, first byte to [DONE]")
    connect_timeout_s: float = _f(5.0, "s: connecting to the server")
    lag_warn_s: float = _f(0.5, "s: warn when a request goes out this late")
    speedup: float = _f(1.0, "send at trace time / speedup")
    max_requests: int | None = _f(2000, "bound on requests sent (None: none)")
    max_duration_s: float | None = _f(900.0, "s after start: later requests are not sent")
    warmup_requests: int = _f(2, "sent one by one before the run, kept out of every metric")
    warmup_prompt_tokens: int = _f(32, "prompt length of a warm-up request")
    warmup_output_tokens: int = _f(8, "output length of a warm-up request")
    checkpoint_s: float = _f(10.0, "s: the records so far are written (atomically) this often")
    cpus: list[int] | None = _f(None, "pin the client to these cores, e.g. [0] (None: as is)")

    def __post_init__(self) -> None:
        c = "client"
        _number(self.max_outstanding, f"{c}.max_outstanding", lo=1, integer=True)
        for k in ("request_timeout_s", "connect_timeout_s", "speedup", "checkpoint_s"):
            _number(getattr(self, k), f"{c}.{k}", gt=0)
        _number(self.lag_warn_s, f"{c}.lag_warn_s", lo=0)
        _number(self.max_requests, f"{c}.max_requests", lo=1, null=True, integer=True)
        _number(self.max_duration_s, f"{c}.max_duration_s", gt=0, null=True)
        _number(self.warmup_requests, f"{c}.warmup_requests", lo=0, integer=True)
        _number(self.warmup_prompt_tokens, f"{c}.warmup_prompt_tokens", lo=1, integer=True)
        _number(self.warmup_output_tokens, f"{c}.warmup_output_tokens", lo=1, integer=True)
        if self.cpus is not None:
            cpus = list(self.cpus)
            have = os.sched_getaffinity(0)
            bad = [x for x in cpus if not isinstance(x, int) or x not in have]
            _need(bool(cpus) and not bad, f"{c}.cpus", f"{bad or cpus} not usable here "
                  f"(have {sorted(have)})")  # fmt: skip


@dataclass(frozen=True)
class LoadgenConfig:
    """A composed ``loadgen`` config, checked: what :func:`experiments.loadgen.run.run_load`
    takes."""

    trace: TraceConfig
    target: TargetConf
    lengths: LengthsConf
    client: ClientConf
    trim: float
    seed: int
    display: str | None
    record: dict  # the whole resolved config (loadgen.json), Hydra's section left out
