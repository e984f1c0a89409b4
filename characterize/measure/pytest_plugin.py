"""splitbench's pytest plugin (entry point ``pytest11: splitbench``): energy and phase fixtures.

Loaded in every pytest run, so this module imports nothing heavy: torch and the profiler are
imported inside the fixtures, when a test asks for them.

- ``gpu_energy``: a factory of measurement blocks::

      def test_x(gpu_energy):
          with gpu_energy("matmul") as m:
              ...                      # GPU work
          m.energy_j, m.time_s         # the block's Measurement (NaN power without a GPU)

  NVML when it works (``power="auto"``), else the Null backend; the device is synchronized
  before and after the block when torch is already imported and sees CUDA.
- ``phase_profiler``: runs a small phase sweep into the test's ``tmp_path``::

      run = phase_profiler(model="tiny-llama", prefill=[(1, 16)], decode=[(2, 32)])
      run.profiles  # contract-2 rows
"""

from __future__ import annotations

import contextlib
import sys

import pytest


class EnergyBlock:
    """The result holder of one ``gpu_energy`` block: ``measurement`` is set when it ends;
    its fields (``energy_j``, ``time_s``, ``mean_power_w``, ...) read through."""

    def __init__(self, name: str):
        self.name = name
        self.measurement = None

    def __getattr__(self, item):
        m = self.__dict__.get("measurement")
        if m is None:
            raise AttributeError(f"energy block '{self.name}' has not ended yet ({item})")
        return getattr(m, item)


def _cuda_sync():
    """torch.cuda.synchronize if torch is already imported and sees CUDA, else None."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        if torch.cuda.is_available():
            return torch.cuda.synchronize
    except Exception:  # noqa: BLE001 - a broken CUDA setup measures without sync
        return None
    return None


@pytest.fixture
def gpu_energy():
    """Factory ``gpu_energy(name="block", gpu_indices=(0,)) -> context manager -> EnergyBlock``."""
    from characterize.measure.power import PowerMonitor, make_backend

    backend = make_backend("auto")
    monitors: list = []

    @contextlib.contextmanager
    def measure(name: str = "block", gpu_indices=(0,), sample_hz: float = 50.0):
        sync = _cuda_sync()
        monitor = PowerMonitor(backend, gpu_indices, sample_hz=sample_hz, sync=sync)
        monitors.append(monitor)
        block = EnergyBlock(name)
        monitor.begin_window(name)
        try:
            yield block
        finally:
            block.measurement = monitor.end_window(name)

    yield measure
    for m in monitors:
        m.close()
    backend.close()


@pytest.fixture
def phase_profiler(tmp_path):
    """Factory running a small sweep: ``phase_profiler(model="tiny-llama", prefill=[(b, prompt)],
    decode=[(b, context)], impl="native", device=None, tp=1, layers=None, timing=None,
    power="auto", **config) -> ProfileRun`` (files under the test's tmp_path)."""
    from characterize.measure.profiler import ProfileConfig, SweepSpec, TimingOptions, profile_phase

    def run(
        model: str = "tiny-llama",
        prefill=((1, 16),),
        decode=((1, 16),),
        impl: str = "native",
        device: str | None = None,
        tp: int = 1,
        layers: int | None = None,
        timing: TimingOptions | None = None,
        power: str = "auto",
        **config,
    ):
        if device is None:
            torch = sys.modules.get("torch")
            device = "cuda" if torch is not None and torch.cuda.is_available() else "cpu"
        if timing is None:
            timing = TimingOptions(warmup=1, repeats=3, min_window_s=0.01, max_point_s=5.0)
        sweep = SweepSpec(
            "fixture",
            prefill=tuple(tuple(p) for p in prefill),
            decode=tuple(tuple(p) for p in decode),
        )
        cfg = ProfileConfig(
            model=model,
            sweep=sweep,
            tp=tp,
            layers=layers,
            impl=impl,
            device=device,
            timing=timing,
            power=power,
            out_dir=str(config.pop("out_dir", tmp_path / "profiles")),
            progress=config.pop("progress", False),
            **config,
        )
        return profile_phase(cfg)

    return run
