"""GPU power and energy measurement (NVML), in the manner of ml-energy/zeus.

``PowerMonitor(backend, gpu_indices=[0], sample_hz=50, sync=...)`` measures named windows:
``begin_window(name)`` ... ``end_window(name) -> Measurement``. The device is synchronized
(``sync``, e.g. ``torch.cuda.synchronize``) before each reading, so queued GPU work is inside
the window it was launched in. Energy comes from NVML's total-energy counter
(``nvmlDeviceGetTotalEnergyConsumption``, mJ) when the GPU has one (``energy_source="counter"``),
else from integrating the board power sampled by a background thread (``"sampled"``); without
NVML every reading is NaN (``"unavailable"``, note ``"power unavailable: <reason>"``).

Backends sit behind :class:`PowerBackend`: :class:`NvmlBackend` (pynvml from nvidia-ml-py,
imported lazily) and :class:`NullBackend`. ``make_backend(power="auto"|"required"|"off")``.
``power_cap(backend, watts, allow=...)`` sets a power limit for a block and restores the previous
one afterwards (also on error or Ctrl-C); it refuses unless ``allow=True``.

This module imports neither torch nor pynvml at import time. Units: seconds, joules, watts,
MHz, degrees Celsius.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass

from common.units import mj_to_j, mw_to_w, w_to_mw

POWER_MODES = ("auto", "required", "off")


class PowerUnavailableError(RuntimeError):
    """Power measurement was required but is not available (one-line message)."""


class PowerCapError(RuntimeError):
    """A power limit cannot or may not be set (one-line message)."""


@dataclass(frozen=True)
class Measurement:
    """One measured window. ``energy_j`` and ``*_power_w`` sum over the window's GPUs.

    ``time_s``: wall time of the window (s); ``energy_j``: energy (J); ``mean_power_w``:
    energy / time (W); ``max_power_w``: highest sampled board power (W, NaN without samples);
    ``sm_clock_mhz``, ``temperature_c``: read at the end (mean over GPUs); ``samples``: power
    samples taken inside the window; ``energy_source``: "counter" | "sampled" | "unavailable".
    """

    name: str
    time_s: float
    energy_j: float
    mean_power_w: float
    max_power_w: float
    sm_clock_mhz: float
    temperature_c: float
    samples: int
    energy_source: str
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


# ----------------------------------------------------------------------------- backends


class PowerBackend:
    """What a monitor needs from a power source. Readings are None where unsupported."""

    name = "base"
    available = False
    reason = ""

    def device_count(self) -> int:
        return 0

    def device_name(self, index: int) -> str | None:
        return None

    def driver_version(self) -> str | None:
        return None

    def energy_mj(self, index: int) -> float | None:
        """Total energy counter since driver load (mJ), or None."""
        return None

    def power_w(self, index: int) -> float | None:
        """Current board power (W), or None."""
        return None

    def sm_clock_mhz(self, index: int) -> float | None:
        return None

    def temperature_c(self, index: int) -> float | None:
        return None

    def power_limit_w(self, index: int) -> float | None:
        return None

    def power_limit_constraints_w(self, index: int) -> tuple[float, float] | None:
        return None

    def default_power_limit_w(self, index: int) -> float | None:
        return None

    def set_power_limit_w(self, index: int, watts: float) -> None:
        raise PowerCapError(f"power backend '{self.name}' cannot set power limits")

    def close(self) -> None:
        return None

    def device_info(self, index: int) -> dict:
        """Name, driver, power limits of one GPU (for profile metadata)."""
        return {
            "nvml_name": self.device_name(index),
            "driver": self.driver_version(),
            "power_limit_w": self.power_limit_w(index),
            "default_power_limit_w": self.default_power_limit_w(index),
            "power_limit_constraints_w": self.power_limit_constraints_w(index),
            "sm_clock_mhz": self.sm_clock_mhz(index),
            "temperature_c": self.temperature_c(index),
        }


class NullBackend(PowerBackend):
    """No power source: every reading is None; measurements say why."""

    name = "null"

    def __init__(self, reason: str = "power measurement off"):
        self.reason = reason


def _cuda_visible_to_nvml(index: int) -> int | str:
    """Map a CUDA device index to an NVML index (or UUID) through CUDA_VISIBLE_DEVICES."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    if not visible:
        return index
    items = [v.strip() for v in visible.split(",") if v.strip()]
    if index >= len(items):
        return index
    item = items[index]
    return int(item) if item.isdigit() else item


class NvmlBackend(PowerBackend):
    """NVML through pynvml (package nvidia-ml-py). ``gpu_indices`` are CUDA device indices."""

    name = "nvml"
    available = True

    def __init__(self):
        try:
            import pynvml
        except ImportError as e:
            raise PowerUnavailableError(
                f"pynvml not importable ({e}); install nvidia-ml-py"
            ) from None
        self._nvml = pynvml
        try:
            pynvml.nvmlInit()
        except Exception as e:  # pynvml.NVMLError and friends
            raise PowerUnavailableError(f"NVML init failed: {e}") from None
        self._handles: dict[int, object] = {}
        self._no_counter: set[int] = set()

    def _handle(self, index: int):
        if index not in self._handles:
            n = self._nvml
            key = _cuda_visible_to_nvml(index)
            try:
                if isinstance(key, int):
                    self._handles[index] = n.nvmlDeviceGetHandleByIndex(key)
                else:
                    self._handles[index] = n.nvmlDeviceGetHandleByUUID(key)
            except Exception as e:
                # e.g. a CUDA_VISIBLE_DEVICES index of the host in a container whose NVML
                # sees only its own GPUs: fall back to the CUDA index itself
                try:
                    self._handles[index] = n.nvmlDeviceGetHandleByIndex(index)
                except Exception:
                    raise PowerUnavailableError(f"NVML has no GPU {index} ({key}): {e}") from None
        return self._handles[index]

    def _try(self, fn: Callable, *args):
        try:
            return fn(*args)
        except Exception:
            return None

    def _read(self, fn: Callable, index: int, *args):
        """``fn(handle of GPU index, *args)`` or None (a reading never raises)."""
        try:
            return fn(self._handle(index), *args)
        except Exception:
            return None

    def device_count(self) -> int:
        return int(self._try(self._nvml.nvmlDeviceGetCount) or 0)

    def device_name(self, index: int) -> str | None:
        name = self._read(self._nvml.nvmlDeviceGetName, index)
        return name.decode() if isinstance(name, bytes) else name

    def driver_version(self) -> str | None:
        v = self._try(self._nvml.nvmlSystemGetDriverVersion)
        return v.decode() if isinstance(v, bytes) else v

    def energy_mj(self, index: int) -> float | None:
        if index in self._no_counter:
            return None
        v = self._read(self._nvml.nvmlDeviceGetTotalEnergyConsumption, index)
        if v is None:
            self._no_counter.add(index)  # pre-Volta or unsupported: stop asking
            return None
        return float(v)

    def power_w(self, index: int) -> float | None:
        v = self._read(self._nvml.nvmlDeviceGetPowerUsage, index)
        return None if v is None else mw_to_w(v)

    def sm_clock_mhz(self, index: int) -> float | None:
        n = self._nvml
        v = self._read(n.nvmlDeviceGetClockInfo, index, n.NVML_CLOCK_SM)
        return None if v is None else float(v)

    def temperature_c(self, index: int) -> float | None:
        n = self._nvml
        v = self._read(n.nvmlDeviceGetTemperature, index, n.NVML_TEMPERATURE_GPU)
        return None if v is None else float(v)

    def power_limit_w(self, index: int) -> float | None:
        v = self._read(self._nvml.nvmlDeviceGetPowerManagementLimit, index)
        return None if v is None else mw_to_w(v)

    def power_limit_constraints_w(self, index: int) -> tuple[float, float] | None:
        v = self._read(self._nvml.nvmlDeviceGetPowerManagementLimitConstraints, index)
        return None if v is None else (mw_to_w(v[0]), mw_to_w(v[1]))

    def default_power_limit_w(self, index: int) -> float | None:
        v = self._read(self._nvml.nvmlDeviceGetPowerManagementDefaultLimit, index)
        return None if v is None else mw_to_w(v)

    def set_power_limit_w(self, index: int, watts: float) -> None:
        try:
            self._nvml.nvmlDeviceSetPowerManagementLimit(
                self._handle(index), int(round(w_to_mw(watts)))
            )
        except Exception as e:
            raise PowerCapError(
                f"GPU {index}: setting the power limit to {watts} W failed: {e}"
            ) from None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._nvml.nvmlShutdown()


def make_backend(power: str = "auto") -> PowerBackend:
    """A power backend for mode ``power``: "auto" (NVML if it works, else Null with the
    reason), "required" (NVML or :class:`PowerUnavailableError`), "off" (Null)."""
    if power not in POWER_MODES:
        raise ValueError(f"power: must be one of {', '.join(POWER_MODES)}, got '{power}'")
    if power == "off":
        return NullBackend("power measurement off (power=off)")
    try:
        backend = NvmlBackend()
        if backend.device_count() < 1:
            backend.close()
            raise PowerUnavailableError("NVML sees no GPU")
        return backend
    except PowerUnavailableError as e:
        if power == "required":
            raise PowerUnavailableError(f"power=required but {e}") from None
        return NullBackend(str(e))


# ----------------------------------------------------------------------------- monitor


@dataclass
class _Window:
    t0: float
    energy0: list[float | None]
    sample0: int
    power0: float | None


class PowerMonitor:
    """Named measurement windows over ``gpu_indices`` (CUDA indices), with a sampling thread.

    ``sample_hz`` (>= 20 recommended) is the board-power sampling rate while any window is
    open; ``sync`` is called before every reading (``torch.cuda.synchronize`` on GPU).
    """

    def __init__(
        self,
        backend: PowerBackend,
        gpu_indices: Sequence[int] = (0,),
        sample_hz: float = 50.0,
        sync: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ):
        if sample_hz <= 0:
            raise ValueError(f"sample_hz must be > 0, got {sample_hz}")
        self.backend = backend
        self.gpu_indices = list(gpu_indices)
        self.sample_hz = float(sample_hz)
        self.sync = sync or (lambda: None)
        self.clock = clock
        self._windows: dict[str, _Window] = {}
        self._samples: list[tuple[float, float]] = []  # (t, watts summed over GPUs)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def available(self) -> bool:
        return bool(self.backend.available)

    # -- sampling thread
    def _total_power(self) -> float | None:
        values = [self.backend.power_w(i) for i in self.gpu_indices]
        if any(v is None for v in values):
            return None
        return float(sum(values))

    def _run(self) -> None:
        period = 1.0 / self.sample_hz
        next_t = self.clock()
        while not self._stop.is_set():
            p = self._total_power()
            if p is not None:
                with self._lock:
                    self._samples.append((self.clock(), p))
            next_t += period
            self._stop.wait(max(0.0, next_t - self.clock()))

    def _start_sampling(self) -> None:
        if not self.available or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="power-monitor", daemon=True)
        self._thread.start()

    def _stop_sampling(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=2.0)
        self._thread = None
        with self._lock:
            self._samples.clear()

    # -- windows
    def begin_window(self, name: str) -> None:
        """Open window ``name`` (synchronizes the device first)."""
        if name in self._windows:
            raise ValueError(f"power window '{name}' is already open")
        self.sync()
        energy0 = [self.backend.energy_mj(i) for i in self.gpu_indices] if self.available else []
        power0 = self._total_power() if self.available else None
        self._start_sampling()
        with self._lock:
            start = len(self._samples)
        self._windows[name] = _Window(self.clock(), energy0, start, power0)

    def end_window(self, name: str) -> Measurement:
        """Close window ``name`` (synchronizes the device first) and return its Measurement."""
        if name not in self._windows:
            raise ValueError(f"power window '{name}' was not opened")
        self.sync()
        t1 = self.clock()
        w = self._windows.pop(name)
        elapsed = t1 - w.t0
        nan = math.nan
        if not self.available:
            if not self._windows:
                self._stop_sampling()
            reason = getattr(self.backend, "reason", "") or "no power backend"
            return Measurement(
                name,
                elapsed,
                nan,
                nan,
                nan,
                nan,
                nan,
                0,
                "unavailable",
                f"power unavailable: {reason}",
            )
        energy1 = [self.backend.energy_mj(i) for i in self.gpu_indices]
        power1 = self._total_power()
        with self._lock:
            samples = [p for t, p in self._samples[w.sample0 :] if t <= t1]
            times = [t for t, _ in self._samples[w.sample0 :] if t <= t1]
        if not self._windows:
            self._stop_sampling()
        energy, source, note = nan, "unavailable", ""
        counters = w.energy0 + energy1
        if counters and all(v is not None for v in counters):
            delta = mj_to_j(sum(b - a for a, b in zip(w.energy0, energy1, strict=True)))
            if delta > 0:
                energy, source = delta, "counter"
            else:
                note = "energy counter did not advance; sampled power used"
        if source != "counter":
            energy = _integrate(w.t0, t1, times, samples, w.power0, power1)
            source = "sampled" if not math.isnan(energy) else "unavailable"
        mean_power = energy / elapsed if elapsed > 0 and not math.isnan(energy) else nan
        extra = [p for p in (w.power0, power1) if p is not None]
        max_power = max(samples + extra) if (samples or extra) else nan
        clocks = [self.backend.sm_clock_mhz(i) for i in self.gpu_indices]
        temps = [self.backend.temperature_c(i) for i in self.gpu_indices]
        return Measurement(
            name=name,
            time_s=elapsed,
            energy_j=energy,
            mean_power_w=mean_power,
            max_power_w=float(max_power),
            sm_clock_mhz=_mean(clocks),
            temperature_c=_mean(temps),
            samples=len(samples),
            energy_source=source,
            note=note,
        )

    @contextlib.contextmanager
    def window(self, name: str) -> Iterator[dict]:
        """``with monitor.window("x") as w: ...``; afterwards ``w["measurement"]``."""
        holder: dict = {}
        self.begin_window(name)
        try:
            yield holder
        finally:
            holder["measurement"] = self.end_window(name)

    def close(self) -> None:
        self._windows.clear()
        self._stop_sampling()

    def __enter__(self) -> PowerMonitor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _mean(values: list[float | None]) -> float:
    vals = [v for v in values if v is not None]
    return float(sum(vals) / len(vals)) if vals else math.nan


def _integrate(
    t0: float,
    t1: float,
    times: list[float],
    watts: list[float],
    p0: float | None,
    p1: float | None,
) -> float:
    """Trapezoid energy (J) of power samples over [t0, t1], with the end readings as anchors."""
    pts: list[tuple[float, float]] = []
    if p0 is not None:
        pts.append((t0, p0))
    pts += [(t, p) for t, p in zip(times, watts, strict=True) if t0 <= t <= t1]
    if p1 is not None:
        pts.append((t1, p1))
    if not pts:
        return math.nan
    if len(pts) == 1:
        return pts[0][1] * (t1 - t0)
    pts.sort()
    energy = sum((b[0] - a[0]) * (a[1] + b[1]) / 2.0 for a, b in zip(pts, pts[1:], strict=False))
    # extend flat to the window edges if the anchors are missing
    energy += pts[0][1] * (pts[0][0] - t0) + pts[-1][1] * (t1 - pts[-1][0])
    return energy


# ----------------------------------------------------------------------------- power cap


@contextlib.contextmanager
def power_cap(
    backend: PowerBackend,
    watts: float,
    allow: bool = False,
    gpu_indices: Sequence[int] = (0,),
) -> Iterator[dict[int, float]]:
    """Run a block with the GPUs' power limit at ``watts``; restore the previous limits after.

    Refuses unless ``allow=True`` (a power limit changes the GPU for every user of the machine:
    only on machines you own). The previous limit is restored on normal exit, on an exception
    and on KeyboardInterrupt. Yields {gpu index: previous limit W}.
    """
    if not allow:
        raise PowerCapError(
            f"refusing to set a {watts} W power limit: allow_power_cap=true is needed "
            "(it changes the GPU for every user; only on machines you own)"
        )
    previous: dict[int, float] = {}
    for i in gpu_indices:
        prev = backend.power_limit_w(i)
        if prev is None:
            raise PowerCapError(f"GPU {i}: the current power limit cannot be read; not capping")
        limits = backend.power_limit_constraints_w(i)
        if limits is not None and not limits[0] <= watts <= limits[1]:
            raise PowerCapError(
                f"GPU {i}: power cap {watts} W outside the allowed {limits[0]:g}..{limits[1]:g} W"
            )
        previous[i] = prev
    changed: list[int] = []
    try:
        for i in gpu_indices:
            backend.set_power_limit_w(i, watts)
            changed.append(i)
        yield dict(previous)
    finally:
        errors = []
        for i in changed:
            try:
                backend.set_power_limit_w(i, previous[i])
            except Exception as e:  # keep restoring the others
                errors.append(f"GPU {i}: {e}")
        if errors:
            raise PowerCapError("restoring power limits failed: " + "; ".join(errors))
