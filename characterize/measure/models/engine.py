"""One timing interface over both implementations: build a point, get a callable that runs it.

``Engine(shard, EngineOptions(impl="native"|"transformers", device=..., dtype=...))``:

- ``prefill_op(batch, prompt)``: a callable running one prefill of ``batch`` prompts of
  ``prompt`` tokens (KV written into a static cache);
- ``decode_op(batch, context)``: a callable running one decode step of ``batch`` requests that
  each hold ``context`` tokens (the static cache is filled with random values up to
  ``context``: timing does not depend on the values);
- on CUDA with ``cuda_graphs`` the step is captured once into a ``torch.cuda.CUDAGraph`` and the
  callable replays it; if capture fails (e.g. a data-dependent op inside transformers), the
  engine falls back to eager for the rest of the run and says so in ``notes``;
- ``release()`` drops the point's cache and graph.

Imports torch (and transformers for ``impl="transformers"``): only measuring code imports it.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import dataclass

import torch

from characterize.measure.models import ENGINE_NAMES, IMPLS
from characterize.measure.models.shard import ShardSpec
from common.units import bytes_to_gib

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class EngineOptions:
    """How to run a shard: implementation, device, dtype, CUDA graphs, torch.compile."""

    impl: str = "native"
    device: str = "cpu"
    dtype: str = "auto"  # auto: bfloat16 on CUDA, float32 on CPU
    cuda_graphs: bool = True
    compile_mode: str | None = None  # native only, e.g. "max-autotune-no-cudagraphs"
    seed: int = 0
    max_positions: int | None = None  # native: rotary/ALiBi tables (default: model context + 1)
    cpu_threads: int | None = 1  # CPU runs: torch threads (tiny models time badly with more)

    def torch_dtype(self) -> torch.dtype:
        name = self.dtype
        if name == "auto":
            name = "bfloat16" if self.device.startswith("cuda") else "float32"
        if name not in DTYPES:
            raise ValueError(f"dtype: must be auto or one of {', '.join(DTYPES)}, got '{name}'")
        return DTYPES[name]


class Engine:
    """A built shard on a device plus per-point op builders (see module doc)."""

    def __init__(self, shard: ShardSpec, options: EngineOptions = EngineOptions()):
        if options.impl not in IMPLS:
            raise ValueError(f"impl: must be one of {', '.join(IMPLS)}, got '{options.impl}'")
        self.shard = shard
        self.options = options
        self.device = torch.device(options.device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("device=cuda but torch sees no CUDA GPU")
        self.dtype = options.torch_dtype()
        self.is_cuda = self.device.type == "cuda"
        if not self.is_cuda and options.cpu_threads:
            torch.set_num_threads(options.cpu_threads)
        self.use_graphs = options.cuda_graphs and self.is_cuda
        self.notes: list[str] = []
        self._point: dict = {}
        if options.impl == "native":
            from characterize.measure.models.native import NativeModel

            self.model = NativeModel(
                shard,
                self.device,
                self.dtype,
                seed=options.seed,
                compile_mode=options.compile_mode,
                max_positions=max(options.max_positions or 0, shard.model.max_context_tokens + 1),
            )
        else:
            from characterize.measure.models import hf

            if options.compile_mode:
                self.notes.append("compile_mode ignored for transformers")
            self.model = hf.build_hf_model(shard, self.device, self.dtype, seed=options.seed)
            self._kw = hf.cache_kwarg(self.model)
            self._cp = hf.takes_cache_position(self.model)
        self.sync()

    # ------------------------------------------------------------------ identity
    @property
    def engine_name(self) -> str:
        return ENGINE_NAMES[self.options.impl]

    def describe(self) -> str:
        """Engine and execution mode, e.g. 'splitbench-native bf16 cuda-graphs'."""
        mode = "cuda-graphs" if self.use_graphs else "eager"
        dt = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]
        text = f"{self.engine_name} {dt} {mode}"
        if self.options.compile_mode and self.options.impl == "native":
            text += f" compile={self.options.compile_mode}"
        return text

    def sync(self) -> None:
        if self.is_cuda:
            torch.cuda.synchronize(self.device)

    # ------------------------------------------------------------------ memory
    def free_bytes(self) -> int | None:
        """Free device memory (bytes) on CUDA, None on CPU."""
        if not self.is_cuda:
            return None
        free, _total = torch.cuda.mem_get_info(self.device)
        return int(free)

    def estimate_bytes(self, phase: str, batch: int, tokens: int) -> int:
        """Rough bytes a point needs beyond the weights: KV cache plus activations."""
        es = torch.tensor([], dtype=self.dtype).element_size()
        s = self.shard
        if phase == "prefill":
            kv = s.kv_cache_bytes(batch, tokens, es)
            act = batch * tokens * (3 * s.hidden_size + 2 * s.ffn_size) * es * 2
            if s.family == "bloom" or self.options.impl == "transformers":
                act += batch * s.num_heads * tokens * tokens * 4  # materialized scores / mask
            return kv + act
        kv = s.kv_cache_bytes(batch, tokens + 1, es)
        act = batch * (3 * s.hidden_size + 2 * s.ffn_size + s.vocab_size) * es * 4
        if self.options.impl == "transformers":
            act += batch * s.num_heads * (tokens + 1) * 4 * 2
        return kv + act

    def check_fits(self, phase: str, batch: int, tokens: int, headroom: float = 0.9) -> str | None:
        """None if the point should fit in free memory, else a note saying why not."""
        free = self.free_bytes()
        if free is None:
            return None
        need = self.estimate_bytes(phase, batch, tokens)
        if need > headroom * free:
            return (
                f"needs ~{bytes_to_gib(need):.1f} GiB (KV + activations), "
                f"{bytes_to_gib(free):.1f} GiB free"
            )
        return None

    # ------------------------------------------------------------------ ops
    def _finish(self, fn: Callable[[], object]) -> Callable[[], None]:
        """Capture ``fn`` into a CUDA graph when enabled; else run it eagerly."""
        if not self.use_graphs:

            def eager() -> None:
                with torch.inference_mode():
                    fn()

            return eager
        try:
            graph = _capture(fn)
        except Exception as e:  # capture not supported by this code path: eager from now on
            if isinstance(e, torch.cuda.OutOfMemoryError) or "out of memory" in str(e):
                raise  # the point is infeasible; graphs stay on for the next one
            self.use_graphs = False
            msg = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
            self.notes.append(f"CUDA graph capture failed, eager from here: {msg}")
            torch.cuda.synchronize(self.device)
            return self._finish(fn)
        self._point["graph"] = graph
        return graph.replay

    def prefill_op(self, batch: int, prompt: int) -> Callable[[], None]:
        """A callable running one prefill of ``batch`` x ``prompt`` tokens."""
        self.release()
        if self.options.impl == "native":
            cache = self.model.new_cache(batch, prompt)
            ids = self.model.random_ids(batch, prompt, seed=self.options.seed)
            self._point.update(cache=cache, ids=ids)

            def fn():
                return self.model(ids, 0, cache)

        else:
            from characterize.measure.models import hf

            cache = hf.new_static_cache(self.model, batch, prompt, self.device, self.dtype)
            ids = _random_ids(self.shard.vocab_size, batch, prompt, self.device, self.options.seed)
            self._point.update(cache=cache, ids=ids)

            def fn():
                return hf.forward_step(self.model, ids, 0, cache, self._kw, self._cp)

        with torch.inference_mode():
            fn()  # first run: lazy allocations (transformers' cache) happen outside any graph
        return self._finish(fn)

    def decode_op(self, batch: int, context: int) -> Callable[[], None]:
        """A callable running one decode step of ``batch`` requests holding ``context`` tokens."""
        self.release()
        seed = self.options.seed
        if self.options.impl == "native":
            cache = self.model.new_cache(batch, context + 1)
            cache.fill_random(context, seed=seed)
            ids = self.model.random_ids(batch, 1, seed=seed)
            self._point.update(cache=cache, ids=ids)

            def fn():
                return self.model(ids, context, cache)

            with torch.inference_mode():
                fn()
        else:
            from characterize.measure.models import hf

            cache = hf.new_static_cache(self.model, batch, context + 1, self.device, self.dtype)
            ids = _random_ids(self.shard.vocab_size, batch, 1, self.device, seed)
            self._point.update(cache=cache, ids=ids)

            def fn():
                return hf.forward_step(self.model, ids, context, cache, self._kw, self._cp)

            with torch.inference_mode():
                fn()  # initializes the lazily allocated static cache
                hf.fill_cache_random(cache, context, seed=seed)
        return self._finish(fn)

    def release(self) -> None:
        """Drop the current point's cache, inputs and graph (frees device memory)."""
        self._point.clear()
        if self.is_cuda:  # a full gc takes ~0.1 s: only where device memory must come back
            gc.collect()
            torch.cuda.synchronize(self.device)
            self._empty_cache()

    def close(self) -> None:
        self.release()
        self.model = None
        gc.collect()
        if self.is_cuda:
            self._empty_cache()

    def _empty_cache(self) -> None:
        # After a capture that failed mid-way the allocator refuses empty_cache (internal
        # assert): cached blocks stay reusable, so say so once and carry on measuring.
        try:
            torch.cuda.empty_cache()
        except RuntimeError as e:
            note = f"torch.cuda.empty_cache failed: {str(e).splitlines()[0][:120] if str(e) else e}"
            if note not in self.notes:
                self.notes.append(note)


def _random_ids(vocab: int, batch: int, length: int, device, seed: int) -> torch.Tensor:
    gen = torch.Generator(device="cpu").manual_seed(seed)
    return torch.randint(0, vocab, (batch, length), generator=gen).to(device)


class GraphUnsafeError(RuntimeError):
    """``fn`` synchronizes with the host (``.item()``, a pageable host-to-device copy such as
    ``torch.tensor(x, device="cuda")``): it cannot be captured."""


def _capture(fn: Callable[[], object], warmup: int = 2):
    """Warm ``fn`` up on a side stream, then capture it into a CUDA graph.

    The first warm-up runs with ``torch.cuda.set_sync_debug_mode("error")``: a step that
    synchronizes raises :class:`GraphUnsafeError` here, before any capture starts. (A capture
    invalidated mid-way leaves the caching allocator in capture mode: every later
    ``torch.cuda.empty_cache()`` then fails an internal assert.)
    """
    previous = torch.cuda.current_stream()
    stream = torch.cuda.Stream()
    stream.wait_stream(previous)
    with torch.inference_mode():
        with torch.cuda.stream(stream):
            for i in range(max(1, warmup)):
                if i == 0:
                    mode = torch.cuda.get_sync_debug_mode()
                    torch.cuda.set_sync_debug_mode("error")
                    try:
                        fn()
                    except RuntimeError as e:
                        if "synchroniz" not in str(e):
                            raise
                        first = str(e).splitlines()[0] if str(e) else ""
                        raise GraphUnsafeError(f"step synchronizes with the host: {first}") from e
                    finally:
                        torch.cuda.set_sync_debug_mode(mode)
                else:
                    fn()
        previous.wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                fn()
        except BaseException:
            # torch.cuda.graph.__exit__ leaves its capture stream current when capture_end
            # raises (an invalidated capture): put the caller's stream back before eager runs
            torch.cuda.set_stream(previous)
            raise
    return graph
