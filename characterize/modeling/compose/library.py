"""Access to AIConfigurator's per-operation data (``aiconfigurator-core``, the ``aic`` extra).

Everything that touches the package is here, and it is imported lazily (inside functions), so
the rest of the suite imports without it. What this module does with the package's own API:

- the catalogue (:func:`catalogue`): which systems, backends (engines) and engine versions the
  installed package can answer for (its queryable version slots, kept only where the system has
  its own GEMM data for that version: a ``next`` slot served by backward fill from older data is
  not a measurement of that version), and which weight dtypes each has GEMM data for;
- an engine handle (:func:`engine_handle`): ``aiconfigurator_core.sdk.engine.EngineHandle.compile``
  on a folder holding a transformers ``config.json`` of the model spec's shape (written from the
  suite's :class:`~characterize.modeling.specs.ModelSpec`, nothing downloaded), the system, the
  backend and its version, ``tp_size`` and the dtype's quant modes;
- its log: the package logs (WARNING) about "low-fidelity fallback rows" of model families
  other than the one asked for when it loads a database; those records are kept off the console
  (its logger does not propagate while a handle is built) and re-emitted at DEBUG on this
  module's logger, ``characterize.modeling.compose.library``.

Credit: Xu et al., "AIConfigurator", arXiv 2601.06288; NVIDIA, Apache-2.0.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

from characterize.modeling.profiles import ProfileError
from characterize.modeling.specs import ModelSpec

PACKAGE = "aiconfigurator-core"
MODULE = "aiconfigurator_core"
PINNED_VERSION = "0.12.0"
CREDIT = 'Xu et al., "AIConfigurator", arXiv 2601.06288 (NVIDIA, Apache-2.0)'

#: suite GPU spec name -> the package's system name (SXM boards: the DGX/HGX nodes' GPUs)
GPU_SYSTEMS = {
    "a100-80gb": "a100_sxm",
    "h100-80gb": "h100_sxm",
    "h200-141gb": "h200_sxm",
    "b200-180gb": "b200_sxm",
}
#: suite engine names = the package's backend names
ENGINES = ("vllm", "sglang", "trtllm")
ENGINE_NAMES = {"vllm": "vLLM", "sglang": "SGLang", "trtllm": "TensorRT-LLM"}
#: suite dtype -> (gemm quant mode, KV-cache quant mode, attention (FMHA) quant mode); the KV
#: cache stays bf16 with fp8 weights (vLLM's ``kv_cache_dtype=auto`` for a checkpoint quantized
#: to fp8 at load time), and attention runs in bf16 (the vLLM tables have bf16 FMHA only)
DTYPES = {
    "bf16": ("bfloat16", "bfloat16", "bfloat16"),
    "fp8": ("fp8", "bfloat16", "bfloat16"),
}
_GEMM_DTYPE_NAMES = {"bfloat16": "bf16", "fp8": "fp8"}


class ComposeError(ProfileError):
    """A compose request names something that does not exist (message: one line, listing what
    does), or the package is missing."""


def _import():
    try:
        import aiconfigurator_core  # noqa: F401
    except ImportError:
        raise ComposeError(
            f"composing profiles needs {PACKAGE}=={PINNED_VERSION} (pip install -e '.[aic]'); "
            "the committed tables under characterize/modeling/data/composed/ need nothing"
        ) from None
    return aiconfigurator_core


def available() -> bool:
    """Whether ``aiconfigurator_core`` can be imported."""
    try:
        _import()
    except ComposeError:
        return False
    return True


def package_version() -> str:
    """The installed package's version (from its distribution metadata)."""
    _import()
    from importlib.metadata import version

    return version(PACKAGE)


def package_dir() -> Path:
    return Path(_import().__file__).resolve().parent


def systems_dir() -> Path:
    return package_dir() / "systems"


def silicon_sample_path() -> Path:
    """``systems/silicon_sample.csv``: the package's measured serving points."""
    return systems_dir() / "silicon_sample.csv"


# ----------------------------------------------------------------------------- the log


_LOG = logging.getLogger(__name__)


class _Redirect(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        _LOG.debug("%s: %s: %s", record.name, record.levelname, record.getMessage())


@contextmanager
def quiet_library() -> Iterator[None]:
    """Meanwhile the package's log records go to this module's logger at DEBUG, not the
    console."""
    logger = logging.getLogger(MODULE)
    handler = _Redirect(level=logging.DEBUG)
    old = (logger.propagate, logger.level)
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate, logger.level = old


# ----------------------------------------------------------------------------- catalogue


def _gemm_file(system: str, engine: str, version: str) -> Path:
    return systems_dir() / "data" / system / "gemm" / engine / version / "gemm_perf.parquet"


@cache
def catalogue() -> dict[str, dict[str, dict[str, tuple[str, ...]]]]:
    """``{system: {engine: {version: (dtypes...)}}}`` for the systems of :data:`GPU_SYSTEMS`.

    Versions: the package's queryable slots (``perf_database.get_supported_databases``) that
    have GEMM data of their own on that system; dtypes: the suite dtypes (:data:`DTYPES`) whose
    GEMM quant mode appears in that table and whose compute the system has (fp8 needs fp8
    tensor cores: not on A100).
    """
    _import()
    import pandas as pd
    import yaml
    from aiconfigurator_core.sdk import perf_database

    with quiet_library():
        supported = perf_database.get_supported_databases()
    out: dict[str, dict[str, dict[str, tuple[str, ...]]]] = {}
    for system in GPU_SYSTEMS.values():
        spec = yaml.safe_load((systems_dir() / f"{system}.yaml").read_text(encoding="utf-8"))
        flops = spec.get("gpu", {})
        engines: dict[str, dict[str, tuple[str, ...]]] = {}
        for engine in ENGINES:
            versions: dict[str, tuple[str, ...]] = {}
            for version in supported.get(system, {}).get(engine, []):
                path = _gemm_file(system, engine, version)
                if not path.is_file():
                    continue
                have = set(pd.read_parquet(path, columns=["gemm_dtype"])["gemm_dtype"].unique())
                dts = []
                for dt, (gemm, _kv, _fmha) in DTYPES.items():
                    key = "fp8_tc_flops" if gemm == "fp8" else "bfloat16_tc_flops"
                    if gemm in have and float(flops.get(key) or 0) > 0:
                        dts.append(dt)
                if dts:
                    versions[version] = tuple(dts)
            if versions:
                engines[engine] = versions
        out[system] = engines
    return out


def _version_key(v: str) -> tuple:
    import re

    parts = re.findall(r"\d+|[a-z]+", v)
    return tuple((0, int(p)) if p.isdigit() else (-1, p) for p in parts)


def latest_version(system: str, engine: str) -> str:
    """The newest version of ``engine`` with its own data on ``system``."""
    versions = catalogue()[system].get(engine, {})
    if not versions:
        raise ComposeError(f"no {engine} data on {system}")
    return max(versions, key=_version_key)


def resolve(gpu: str, engine: str, version: str | None, dtype: str) -> tuple[str, str]:
    """(system, version) for a suite GPU, engine, version (None: latest) and dtype; a name that
    does not exist raises :class:`ComposeError` listing what does."""
    if gpu not in GPU_SYSTEMS:
        raise ComposeError(
            f"gpu '{gpu}' has no {PACKAGE} system (known: "
            + ", ".join(f"{g} ({s})" for g, s in GPU_SYSTEMS.items())
            + ")"
        )
    system = GPU_SYSTEMS[gpu]
    if engine not in ENGINES:
        raise ComposeError(f"engine '{engine}' unknown (known: {', '.join(ENGINES)})")
    if dtype not in DTYPES:
        raise ComposeError(f"dtype '{dtype}' unknown (known: {', '.join(DTYPES)})")
    engines = catalogue()[system]
    if engine not in engines:
        have = ", ".join(sorted(engines)) or "none"
        raise ComposeError(f"engine '{engine}' has no data on {system} (there: {have})")
    versions = engines[engine]
    if version is None:
        version = latest_version(system, engine)
    if version not in versions:
        have = ", ".join(sorted(versions, key=_version_key))
        raise ComposeError(f"{engine} version '{version}' has no data on {system} (there: {have})")
    if dtype not in versions[version]:
        raise ComposeError(
            f"dtype '{dtype}' has no GEMM data for {engine} {version} on {system} "
            f"(there: {', '.join(versions[version])})"
        )
    return system, version


# ----------------------------------------------------------------------------- engine


def hf_config(spec: ModelSpec) -> dict:
    """A transformers ``config.json`` of the spec's shape (Llama family only)."""
    if spec.family != "llama":
        raise ComposeError(
            f"model '{spec.name}': only Llama-family specs can be composed (family "
            f"'{spec.family}'); the package has no model layer built from this config"
        )
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": spec.hidden_size,
        "intermediate_size": spec.ffn_size,
        "num_attention_heads": spec.num_attention_heads,
        "num_hidden_layers": spec.num_layers,
        "num_key_value_heads": spec.num_kv_heads,
        "head_dim": spec.head_dim,
        "vocab_size": spec.vocab_size,
        "max_position_embeddings": spec.max_context_tokens,
        "rms_norm_eps": spec.rms_norm_eps,
        "rope_theta": spec.rope_theta,
        "tie_word_embeddings": spec.tie_word_embeddings,
        "hidden_act": "silu",
        "torch_dtype": "bfloat16",
    }


def engine_handle(spec: ModelSpec, system: str, engine: str, version: str, dtype: str, tp: int):
    """The package's compiled engine for this model shape, system,
    backend, version, dtype and TP degree."""
    _import()
    from aiconfigurator_core.sdk.engine import EngineHandle

    gemm, kv, fmha = DTYPES[dtype]
    with tempfile.TemporaryDirectory(prefix="splitbench-aic-") as tmp:
        model_dir = os.path.join(tmp, spec.name)
        os.makedirs(model_dir)
        Path(model_dir, "config.json").write_text(json.dumps(hf_config(spec)), encoding="utf-8")
        with quiet_library():
            try:
                handle = EngineHandle.compile(
                    model_dir,
                    system,
                    engine,
                    backend_version=version,
                    tp_size=int(tp),
                    gemm_quant_mode=gemm,
                    kvcache_quant_mode=kv,
                    fmha_quant_mode=fmha,
                )
                handle.predict_decode_latency(1, 128)  # loads the tables now, inside the capture
            except (ValueError, RuntimeError, KeyError) as e:
                msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise ComposeError(
                    f"{PACKAGE} cannot compose {spec.name} on {system} {engine} {version} "
                    f"{dtype} tp{tp}: {msg}"
                ) from None
    return handle
