"""``deploy``: the vLLM instances of every design (port, cores, KV cache, batch limits), the
proxy or router in front of them, and the KV connector of the disaggregated one. The ports and
cores are checked against each other here (each engine its own cores, three distinct ports)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments.validation.schema.checks import at_least, check_cpus, need, parse_cpus, pos
from experiments.validation.schema.model import DTYPE_BYTES

DEVICES = ("cpu", "cuda")


@dataclass
class InstanceConfig:
    """One vLLM server. ``cpus``: cores its OpenMP threads are bound to (CPU) or CUDA device
    ids (GPU); ``server_cpus`` (CPU): cores of the server's other threads and processes (the API
    server, the engine core's scheduler), null: the cores no engine of the design computes on,
    or ``cpus`` when every core computes (:func:`experiments.validation.deploy.server_cores`);
    ``kvcache_gib``: its KV cache (CPU; on a GPU ``gpu_memory_utilization``)."""

    port: int = 8100
    cpus: str = "0"
    server_cpus: str | None = None
    kvcache_gib: float = 1.0
    gpu_memory_utilization: float = 0.8
    max_num_seqs: int = 32
    max_num_batched_tokens: int | None = None  # null: vLLM's default
    extra_args: list[str] = field(default_factory=list)

    def check(self, key: str, device: str) -> None:
        need(1 <= self.port <= 65535, f"{key}.port", f"must be in 1..65535, got {self.port}")
        if device == "cpu":
            check_cpus(self.cpus, f"{key}.cpus", null=False)
            check_cpus(self.server_cpus, f"{key}.server_cpus")
        else:
            need(bool(re.fullmatch(r"\d+(,\d+)*", str(self.cpus))), f"{key}.cpus",
                 f"CUDA device ids like \"0\" or \"0,1\", got {self.cpus!r}")  # fmt: skip
        pos(self.kvcache_gib, f"{key}.kvcache_gib")
        need(0 < self.gpu_memory_utilization <= 1, f"{key}.gpu_memory_utilization",
             f"must be in (0, 1], got {self.gpu_memory_utilization}")  # fmt: skip
        at_least(self.max_num_seqs, 1, f"{key}.max_num_seqs")
        at_least(self.max_num_batched_tokens, 1, f"{key}.max_num_batched_tokens", null=True)


@dataclass
class ConnectorConfig:
    """The KV connector of the disaggregated deployment. The prefill instance is its
    ``kv_producer`` and the decode instance its ``kv_consumer`` (fixed: a consumer never stores,
    a producer never loads)."""

    name: str = "ExampleConnector"
    storage_dir: str | None = None  # ExampleConnector: a fresh folder under it per deployment
    buffer_device: str | None = None  # NixlConnector: "cpu" for the host-buffer path
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class DeployConfig:
    device: str = "cpu"  # cpu: OpenMP threads bound to `cpus`; cuda: `cpus` are device ids
    dtype: str = "float32"
    max_model_len: int = 4096
    health_timeout_s: float = 240.0
    # vLLM caches prompt blocks by default: repeats would hit the cache of the earlier ones;
    # off, as in the profile and the simulator (and checked on the engines' counters)
    prefix_caching: bool = False
    python: str | None = None  # the interpreter with vLLM (null: this one)
    colocated: InstanceConfig = field(default_factory=lambda: InstanceConfig(8100, "0"))
    # baseline2: a second co-located instance on the other core, behind the router (proxy_port)
    colocated2: InstanceConfig = field(default_factory=lambda: InstanceConfig(8101, "1"))
    prefill: InstanceConfig = field(default_factory=lambda: InstanceConfig(8110, "0"))
    decode: InstanceConfig = field(default_factory=lambda: InstanceConfig(8120, "1"))
    proxy_port: int = 8130  # the proxy (splitwise) or the router (baseline2)
    # null: the cores no engine computes on, else the first engine's cores (splitwise's prefill
    # instance, baseline2's first instance: deploy.client_cores)
    proxy_cpus: str | None = None
    connector: ConnectorConfig = field(default_factory=ConnectorConfig)

    def check(self, designs: list[str], key: str = "deploy") -> None:
        need(self.device in DEVICES, f"{key}.device", f"must be cpu or cuda, got {self.device!r}")
        need(self.dtype in DTYPE_BYTES, f"{key}.dtype",
             f"unknown dtype '{self.dtype}' (known: {', '.join(DTYPE_BYTES)})")  # fmt: skip
        at_least(self.max_model_len, 2, f"{key}.max_model_len")
        pos(self.health_timeout_s, f"{key}.health_timeout_s")
        need(not self.prefix_caching, f"{key}.prefix_caching",
             "must be false: repeated prompts would hit the cache (the simulator has none)")  # fmt: skip
        if self.python is not None:
            need(Path(self.python).is_file() and os.access(self.python, os.X_OK),
                 f"{key}.python", f"not an executable file: {self.python}")  # fmt: skip
        for n in ("colocated", "colocated2", "prefill", "decode"):
            getattr(self, n).check(f"{key}.{n}", self.device)
        need(1 <= self.proxy_port <= 65535, f"{key}.proxy_port",
             f"must be in 1..65535, got {self.proxy_port}")  # fmt: skip
        check_cpus(self.proxy_cpus, f"{key}.proxy_cpus")
        for design, (a, b) in (("splitwise", ("prefill", "decode")),
                               ("baseline2", ("colocated", "colocated2"))):  # fmt: skip
            if design not in designs:
                continue
            ia, ib = getattr(self, a), getattr(self, b)
            ports = {f"{a}.port": ia.port, f"{b}.port": ib.port, "proxy_port": self.proxy_port}
            seen: dict[int, str] = {}
            for n, p in ports.items():
                need(p not in seen, f"{key}.{n}", f"port {p} is also deploy.{seen.get(p)}: "
                     f"{design} needs three different ports ({a}, {b}, proxy)")  # fmt: skip
                seen[p] = n
            if self.device == "cpu":
                both = set(parse_cpus(ia.cpus) or []) & set(parse_cpus(ib.cpus) or [])
                need(not both, f"{key}.{b}.cpus", f"shares core(s) {sorted(both)} with "
                     f"deploy.{a}.cpus: each engine gets its own cores")  # fmt: skip
        if "splitwise" in designs:
            pre = self.prefill.max_num_batched_tokens
            need(pre is None or pre >= self.max_model_len, f"{key}.prefill.max_num_batched_tokens",
                 f"must be >= deploy.max_model_len ({self.max_model_len}): the prefill instance "
                 "never splits a prompt (ExampleConnector stores only a prompt's first chunk)")  # fmt: skip
            need(bool(self.connector.name), f"{key}.connector.name", "must be set")
