"""KV-cache transfer between a prompt machine and a token machine (Splitwise, paper Sec. IV-D).

Size: ``ModelSpec.kv_bytes_per_token x prompt tokens`` (2 x layers x kv_heads x head_dim x bytes
per element: grouped-query attention counted). A transfer uses the sender's and the receiver's
InfiniBand (``MachineSpec.network_bytes_per_s``) at the slower of the two rates.

Link sharing: FIFO per link. Every machine has a send link and a receive link; a transfer
reserves both for ``bytes / rate`` seconds, starting when both are free (reservations are made in
the order transfers are registered, i.e. in order of prompt completion). FIFO keeps the end time
known when the transfer is registered, which the simulator relies on.

Timing:
- short prompts (< ``layerwise_threshold_tokens``): serialized after the prompt:
  ``start = max(prefill_end, links free)``, ``end = start + bytes / rate``;
- long prompts: layer-wise, overlapped with the prompt computation: the transfer may start at
  ``prefill_start``; the last layer's share cannot leave before the prompt ends, so
  ``end = max(start + bytes / rate, prefill_end + bytes / num_layers / rate + exposed_s)`` where
  ``exposed_s`` is the sending machine's ``kv_exposed_transfer_s`` (or the configured override).
- a transfer to the same machine (mixed pool, baselines) costs nothing.
- calibrated hand-over (``handover_s``, ``per_token_s``; e.g. from ``splitbench-validate``'s
  calibration of a real connector): a transfer lasts ``handover_s + tokens x per_token_s`` (the
  link time ``bytes / rate`` when ``per_token_s`` is null, ``handover_s`` then added to the
  rules above); with ``per_token_s`` set it is serialized after the prompt for every length (a
  connector that hands KV over after the prefill, as vLLM's ExampleConnector does).
- with prefix caching and ``uncached_only``, ``tokens`` is the context the token machine's
  prefix cache does not hold (the rest is copied locally there, at no cost); the layer-wise
  threshold applies to those tokens.
The exposed transfer time of a request (``kv_transfer_s``) is ``end - prefill_end``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from replay.errors import need


@dataclass
class KVTransferConfig:
    """Options of the KV transfer model (seconds, tokens): the schema of ``scheduler.kv_transfer``."""

    layerwise_threshold_tokens: int = field(
        default=512,
        metadata={"help": "prompts at least this long transfer KV layer-wise (overlapped)"},
    )
    exposed_s: float | None = field(
        default=None,
        metadata={"help": "exposed KV transfer time, s (None: the sending machine spec's value)"},
    )
    enabled: bool = field(
        default=True,
        metadata={"help": "False: KV transfers are free and instant (ideal interconnect)"},
    )
    handover_s: float = field(
        default=0.0,
        metadata={"help": "fixed cost of one KV hand-over, s (a calibrated connector's intercept)"},
    )
    per_token_s: float | None = field(
        default=None,
        metadata={"help": "s per transferred token (None: bytes / link rate, layer-wise rules)"},
    )
    bandwidth_scale: float = field(
        default=1.0,
        metadata={"help": "factor on every machine's KV link bandwidth (sensitivity: 0.5)"},
    )
    uncached_only: bool = field(
        default=False,
        metadata={
            "help": "prefix caching: send only the context the token machine's prefix cache "
            "does not hold (False: the whole context)"
        },
    )

    def __post_init__(self) -> None:
        k = "scheduler.kv_transfer"
        v = self.layerwise_threshold_tokens
        need(isinstance(v, int) and not isinstance(v, bool) and v >= 0,
             f"{k}.layerwise_threshold_tokens", f"must be an integer >= 0, got {v!r}")  # fmt: skip
        need(isinstance(self.uncached_only, bool), f"{k}.uncached_only",
             f"must be true or false, got {self.uncached_only!r}")  # fmt: skip
        v = self.exposed_s
        need(v is None or (math.isfinite(v) and v >= 0), f"{k}.exposed_s",
             f"must be a finite number >= 0 or null, got {v!r}")  # fmt: skip
        v = self.handover_s
        need(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
             and v >= 0, f"{k}.handover_s", f"must be a finite number >= 0, got {v!r}")  # fmt: skip
        v = self.bandwidth_scale
        need(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
             and v > 0, f"{k}.bandwidth_scale", f"must be a finite number > 0, got {v!r}")  # fmt: skip
        v = self.per_token_s
        need(v is None or (isinstance(v, int | float) and not isinstance(v, bool)
             and math.isfinite(v) and v >= 0), f"{k}.per_token_s",
             f"must be a finite number >= 0 or null, got {v!r}")  # fmt: skip


class KVLinks:
    """FIFO send/receive links of every machine; :meth:`transfer` returns the end time (s)."""

    __slots__ = (
        "bw", "exposed", "tx_free", "rx_free", "kvb", "layers", "threshold", "enabled", "fixed",
        "per_token",
    )  # fmt: skip

    def __init__(
        self,
        bandwidths: list[float],
        exposed: list[float],
        kv_bytes_per_token: int,
        num_layers: int,
        config: KVTransferConfig,
    ):
        scale = float(config.bandwidth_scale)
        self.bw = [b * scale for b in bandwidths] if scale != 1.0 else list(bandwidths)
        self.exposed = [config.exposed_s if config.exposed_s is not None else e for e in exposed]
        self.tx_free = [0.0] * len(bandwidths)
        self.rx_free = [0.0] * len(bandwidths)
        self.kvb = kv_bytes_per_token
        self.layers = num_layers
        self.threshold = config.layerwise_threshold_tokens
        self.enabled = config.enabled
        self.fixed = float(config.handover_s)
        self.per_token = config.per_token_s

    def transfer(self, src: int, dst: int, tokens: int, prefill_start: float, prefill_end: float):
        """Reserve the links for one request's KV; return the time its KV is on ``dst``."""
        if src == dst or not self.enabled:
            return prefill_end
        bw = self.bw[src]
        if self.bw[dst] < bw:
            bw = self.bw[dst]
        nbytes = self.kvb * tokens
        free = self.tx_free[src]
        if self.rx_free[dst] > free:
            free = self.rx_free[dst]
        if self.per_token is not None:  # calibrated connector: after the prompt, fixed + rate
            start = prefill_end if prefill_end > free else free
            end = start + self.fixed + tokens * self.per_token
        elif tokens >= self.threshold:
            start = prefill_start if prefill_start > free else free
            end = start + nbytes / bw + self.fixed
            tail = prefill_end + nbytes / self.layers / bw + self.exposed[src] + self.fixed
            if tail > end:
                end = tail
        else:
            start = prefill_end if prefill_end > free else free
            end = start + nbytes / bw + self.fixed
        self.tx_free[src] = end
        self.rx_free[dst] = end
        return end
