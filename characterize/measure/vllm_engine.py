"""Profile a real vLLM engine's phases: the ``vllm`` engine of ``splitbench-characterize``.

``VLLMEngine`` has the interface :func:`characterize.measure.profiler.profile_phase` times
(``prefill_op``, ``decode_op``, ``check_fits``, ``release``, ``sync``, ``describe``, ``dtype``,
``is_cuda``, ``notes``), so a vLLM profile gets the same sweep configs, resume, infeasible
handling, power monitor (NVML on a GPU, the null backend on a CPU) and contract-2 table as the
suite's own harness. It runs vLLM in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``: the
engine core is an in-process client, so ``LLMEngine.step()`` is one scheduler iteration:
schedule, execute the model, update the requests) with prefix caching off (repeated prompts
would be cache hits) and seeded random token-id prompts (no tokenizer).

What one timed op is:

- prefill (batch b, prompt p): ``add_request`` of b fresh requests of p random ids with
  ``max_tokens=1``, then ONE ``step()``; the op checks that the step finished all b requests
  (their whole prompts fit the chunked-prefill budget ``max_num_batched_tokens`` and
  ``max_num_seqs``, which :meth:`check_fits` pre-checks). The time includes the b
  ``add_request`` calls (input processing, well under 1% of the step here).
- decode (batch b, context c): untimed setup adds b requests of c prompt tokens (``ignore_eos``,
  ``max_tokens`` = enough steps for the point) and steps until every prompt is prefilled; each
  timed op is ONE ``step()`` that decodes one token for each of the b requests. The context
  grows by one token per repetition (c, c+1, ...: the number of repetitions is in the row).

Mixed iterations (decode tokens plus a prefill chunk in one step) are not contract-2 rows; they
are left to the validation issue.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class VLLMOptions:
    model_dir: str
    max_num_batched_tokens: int = 4096  # the chunked-prefill budget
    max_num_seqs: int = 64
    max_model_len: int = 4096
    dtype: str = "float32"
    enforce_eager: bool = True
    device: str = "cpu"
    kvcache_gib: int = 1  # CPU: VLLM_CPU_KVCACHE_SPACE (whole GiB)
    omp_bind: str | None = None  # CPU: VLLM_CPU_OMP_THREADS_BIND (None: vLLM's default)
    max_decode_steps: int = 256  # steps a decode point may take (warm-up + repeats)
    seed: int = 0


class VLLMEngineError(RuntimeError):
    """vLLM did a different iteration than the point asked for (message is one line)."""


class VLLMEngine:
    """An in-process vLLM engine with op builders for the profiler (see module doc)."""

    is_cuda = False

    def __init__(self, options: VLLMOptions):
        self.options = o = options
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
        if o.device == "cpu":
            os.environ["VLLM_CPU_KVCACHE_SPACE"] = f"{o.kvcache_gib:g}"
            if o.omp_bind:
                os.environ["VLLM_CPU_OMP_THREADS_BIND"] = o.omp_bind
        import torch
        import vllm
        from vllm import LLM

        self.version = vllm.__version__
        self.is_cuda = o.device.startswith("cuda")
        self.dtype = getattr(torch, o.dtype)
        self.notes: list[str] = []
        self.llm = LLM(
            model=o.model_dir,
            skip_tokenizer_init=True,
            dtype=o.dtype,
            enforce_eager=o.enforce_eager,
            max_model_len=o.max_model_len,
            max_num_batched_tokens=o.max_num_batched_tokens,
            max_num_seqs=o.max_num_seqs,
            enable_prefix_caching=False,
            enable_chunked_prefill=True,
            seed=o.seed,
        )
        self.engine = self.llm.llm_engine
        cc = self.engine.vllm_config.cache_config
        self.block_size = int(cc.block_size)
        self.kv_tokens = int((cc.num_gpu_blocks or 0) * cc.block_size)
        self._rng = np.random.default_rng(o.seed)
        self._next = 0
        self._live: list[str] = []
        self._sync = torch.cuda.synchronize if self.is_cuda else (lambda: None)

    # --------------------------------------------------------------------------- helpers

    def sync(self) -> None:
        self._sync()

    def describe(self) -> str:
        o = self.options
        return (
            f"vLLM {self.version} engine steps (in-process V1 engine core; "
            f"max_num_batched_tokens={o.max_num_batched_tokens}, max_num_seqs={o.max_num_seqs}, "
            f"dtype={o.dtype}, enforce_eager={o.enforce_eager}, device={o.device}, "
            "prefix caching off)"
        )

    def _params(self, max_tokens: int):
        from vllm import SamplingParams

        return SamplingParams(
            max_tokens=max_tokens, ignore_eos=True, temperature=0.0, detokenize=False
        )

    def _add(self, batch: int, tokens: int, max_tokens: int) -> list[str]:
        ids = []
        for _ in range(batch):
            rid = f"sb-{self._next}"
            self._next += 1
            prompt = self._rng.integers(100, 30000, size=tokens).tolist()
            self.engine.add_request(rid, {"prompt_token_ids": prompt}, self._params(max_tokens))
            ids.append(rid)
        return ids

    def check_fits(self, phase: str, batch: int, tokens: int) -> str | None:
        o = self.options
        if batch > o.max_num_seqs:
            return f"batch {batch} > max_num_seqs {o.max_num_seqs}"
        if phase == "prefill":
            if batch * tokens > o.max_num_batched_tokens:
                return (
                    f"{batch} x {tokens} prompt tokens > max_num_batched_tokens "
                    f"{o.max_num_batched_tokens} (not one iteration)"
                )
            if tokens + 1 > o.max_model_len:
                return f"prompt {tokens} + 1 > max_model_len {o.max_model_len}"
            need = batch * (tokens + 1)
        else:
            if tokens + o.max_decode_steps + 2 > o.max_model_len:
                return f"context {tokens} + {o.max_decode_steps} steps > max_model_len"
            need = batch * (tokens + o.max_decode_steps + 2)
        if self.kv_tokens and need > self.kv_tokens:
            return f"KV cache: {need} tokens > {self.kv_tokens} (VLLM_CPU_KVCACHE_SPACE)"
        return None

    # --------------------------------------------------------------------------- ops

    def prefill_op(self, batch: int, tokens: int):
        def op() -> None:
            ids = set(self._add(batch, tokens, 1))
            outs = self.engine.step()
            done = {o.request_id for o in outs if o.finished}
            if not ids <= done:
                self._abort(list(ids))
                raise VLLMEngineError(
                    f"prefill {batch} x {tokens}: vLLM finished {len(ids & done)} of {batch} "
                    "requests in one step (budget or scheduling differs)"
                )

        return op

    def decode_op(self, batch: int, tokens: int):
        steps = self.options.max_decode_steps
        ids = self._add(batch, tokens, steps + 2)
        self._live = ids
        seen: set[str] = set()
        for _ in range(64 + batch * tokens // max(self.options.max_num_batched_tokens, 1)):
            for o in self.engine.step():
                if o.outputs and len(o.outputs[0].token_ids) >= 1:
                    seen.add(o.request_id)
            if len(seen) == batch:
                break
        else:
            raise VLLMEngineError(f"decode {batch} x {tokens}: prompts not prefilled")
        left = [steps]

        def op() -> None:
            if left[0] <= 0:
                raise VLLMEngineError(
                    f"decode {batch} x {tokens}: more than max_decode_steps={steps} steps"
                )
            left[0] -= 1
            outs = self.engine.step()
            if len(outs) != batch:
                raise VLLMEngineError(
                    f"decode {batch} x {tokens}: a step returned {len(outs)} of {batch} requests"
                )

        return op

    def _abort(self, ids: list[str]) -> None:
        if ids:
            self.engine.abort_request(ids)
        while self.engine.has_unfinished_requests():
            self.engine.step()

    def release(self) -> None:
        self._abort(self._live)
        self._live = []
        gc.collect()

    def close(self) -> None:
        self.release()
        del self.engine
        del self.llm
        gc.collect()
