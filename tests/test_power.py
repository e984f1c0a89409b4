"""Power monitor, backends and power cap (no GPU needed: fake backends and a fake pynvml)."""

from __future__ import annotations

import math
import subprocess
import sys
import time
import types

import pytest

from characterize.measure import power as pw
from characterize.measure.power import (
    Measurement,
    NullBackend,
    NvmlBackend,
    PowerBackend,
    PowerCapError,
    PowerMonitor,
    PowerUnavailableError,
    make_backend,
    power_cap,
)


class FakeBackend(PowerBackend):
    """Records every call; power limits, energy counter and power readings are scripted."""

    name = "fake"
    available = True

    def __init__(
        self, limit_w=700.0, constraints=(200.0, 700.0), energy=None, watts=100.0, fail_set_at=None
    ):
        self.calls: list[tuple] = []
        self.limit = {0: limit_w, 1: limit_w}
        self.constraints = constraints
        self.energy = energy  # callable index -> mJ, or None (no counter)
        self.watts = watts
        self.fail_set_at = fail_set_at

    def power_limit_w(self, index):
        self.calls.append(("get", index))
        return self.limit[index]

    def power_limit_constraints_w(self, index):
        return self.constraints

    def set_power_limit_w(self, index, watts):
        self.calls.append(("set", index, watts))
        if self.fail_set_at is not None and watts == self.fail_set_at:
            raise PowerCapError(f"GPU {index}: refused")
        self.limit[index] = watts

    def energy_mj(self, index):
        return None if self.energy is None else self.energy(index)

    def power_w(self, index):
        return self.watts

    def sm_clock_mhz(self, index):
        return 1980.0

    def temperature_c(self, index):
        return 40.0 + index


# ----------------------------------------------------------------------------- power cap


def test_power_cap_refuses_without_allow():
    b = FakeBackend()
    with pytest.raises(PowerCapError) as e:
        with power_cap(b, 400.0):
            pass
    msg = str(e.value)
    assert "allow_power_cap=true" in msg and "\n" not in msg
    assert not [c for c in b.calls if c[0] == "set"]


def test_power_cap_sets_and_restores():
    b = FakeBackend(limit_w=700.0)
    with power_cap(b, 450.0, allow=True, gpu_indices=[0, 1]) as prev:
        assert prev == {0: 700.0, 1: 700.0}
        assert b.limit == {0: 450.0, 1: 450.0}
    assert b.limit == {0: 700.0, 1: 700.0}
    sets = [c for c in b.calls if c[0] == "set"]
    assert sets == [("set", 0, 450.0), ("set", 1, 450.0), ("set", 0, 700.0), ("set", 1, 700.0)]


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()])
def test_power_cap_restores_on_error_and_interrupt(exc):
    b = FakeBackend(limit_w=650.0)
    with pytest.raises(type(exc)):
        with power_cap(b, 300.0, allow=True):
            assert b.limit[0] == 300.0
            raise exc
    assert b.limit[0] == 650.0
    assert b.calls[-1] == ("set", 0, 650.0)


def test_power_cap_outside_constraints_is_refused_before_setting():
    b = FakeBackend(constraints=(200.0, 700.0))
    with pytest.raises(PowerCapError, match="outside the allowed 200..700 W"):
        with power_cap(b, 900.0, allow=True):
            pass
    assert not [c for c in b.calls if c[0] == "set"]


def test_power_cap_partial_set_failure_restores_what_was_set():
    b = FakeBackend(limit_w=700.0)

    class Second(FakeBackend):
        def set_power_limit_w(self, index, watts):
            if index == 1 and watts == 400.0:
                self.calls.append(("set", index, watts))
                raise PowerCapError("GPU 1: refused")
            super().set_power_limit_w(index, watts)

    b = Second(limit_w=700.0)
    with pytest.raises(PowerCapError, match="GPU 1: refused"):
        with power_cap(b, 400.0, allow=True, gpu_indices=[0, 1]):
            pass
    assert b.limit == {0: 700.0, 1: 700.0}


def test_null_backend_cannot_cap():
    with pytest.raises(PowerCapError, match="cannot be read"):
        with power_cap(NullBackend("no gpu"), 300.0, allow=True):
            pass


# ----------------------------------------------------------------------------- backends


def test_make_backend_modes(monkeypatch):
    def broken():
        raise PowerUnavailableError("NVML init failed: driver not loaded")

    monkeypatch.setattr(pw, "NvmlBackend", broken)
    off = make_backend("off")
    assert isinstance(off, NullBackend) and "power=off" in off.reason
    auto = make_backend("auto")
    assert isinstance(auto, NullBackend) and "driver not loaded" in auto.reason
    with pytest.raises(PowerUnavailableError) as e:
        make_backend("required")
    assert str(e.value).startswith("power=required but NVML init failed")
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="power: must be one of"):
        make_backend("sometimes")


def test_null_monitor_reports_unavailable_with_reason():
    synced = []
    mon = PowerMonitor(NullBackend("no NVML here"), sync=lambda: synced.append(1))
    mon.begin_window("w")
    time.sleep(0.01)
    m = mon.end_window("w")
    assert isinstance(m, Measurement)
    assert m.time_s >= 0.01
    assert math.isnan(m.energy_j) and math.isnan(m.mean_power_w) and math.isnan(m.max_power_w)
    assert m.energy_source == "unavailable"
    assert m.note == "power unavailable: no NVML here"
    assert len(synced) == 2  # before each reading


def test_monitor_counter_energy():
    counter = {0: 1_000.0}

    def energy(i):
        counter[0] += 2_500.0  # each read: +2.5 J
        return counter[0]

    mon = PowerMonitor(FakeBackend(energy=energy, watts=250.0), sample_hz=200)
    with mon.window("x") as w:
        time.sleep(0.02)
    m = w["measurement"]
    assert m.energy_source == "counter"
    assert m.energy_j == pytest.approx(2.5)
    assert m.mean_power_w == pytest.approx(2.5 / m.time_s)
    assert m.sm_clock_mhz == 1980.0 and m.temperature_c == 40.0
    assert m.max_power_w == 250.0
    mon.close()


def test_monitor_sampled_energy_when_no_counter():
    mon = PowerMonitor(FakeBackend(energy=None, watts=120.0), sample_hz=400)
    mon.begin_window("s")
    time.sleep(0.05)
    m = mon.end_window("s")
    assert m.energy_source == "sampled"
    assert m.samples >= 3
    assert m.energy_j == pytest.approx(120.0 * m.time_s, rel=1e-6)
    assert m.mean_power_w == pytest.approx(120.0, rel=1e-6)


def test_monitor_counter_stuck_falls_back_to_samples_with_note():
    mon = PowerMonitor(FakeBackend(energy=lambda i: 5_000.0, watts=80.0), sample_hz=400)
    mon.begin_window("s")
    time.sleep(0.02)
    m = mon.end_window("s")
    assert m.energy_source == "sampled"
    assert "did not advance" in m.note
    assert m.mean_power_w == pytest.approx(80.0, rel=1e-6)


def test_monitor_sums_gpus_and_nests_windows():
    mon = PowerMonitor(FakeBackend(energy=None, watts=100.0), gpu_indices=[0, 1], sample_hz=400)
    mon.begin_window("outer")
    mon.begin_window("inner")
    time.sleep(0.01)
    inner = mon.end_window("inner")
    time.sleep(0.01)
    outer = mon.end_window("outer")
    assert inner.mean_power_w == pytest.approx(200.0)
    assert outer.time_s > inner.time_s
    assert outer.temperature_c == pytest.approx(40.5)  # mean over GPUs 0 and 1
    with pytest.raises(ValueError, match="was not opened"):
        mon.end_window("outer")
    mon.begin_window("a")
    with pytest.raises(ValueError, match="already open"):
        mon.begin_window("a")
    mon.close()


def _fake_pynvml(calls):
    m = types.ModuleType("pynvml")
    m.NVML_CLOCK_SM = 1
    m.NVML_TEMPERATURE_GPU = 0
    m.nvmlInit = lambda: calls.append("init")
    m.nvmlShutdown = lambda: calls.append("shutdown")
    m.nvmlDeviceGetCount = lambda: 2
    m.nvmlDeviceGetHandleByIndex = lambda i: ("h", i)
    m.nvmlDeviceGetHandleByUUID = lambda u: ("u", u)
    m.nvmlDeviceGetName = lambda h: b"NVIDIA H100 80GB HBM3"
    m.nvmlSystemGetDriverVersion = lambda: "570.1"
    m.nvmlDeviceGetTotalEnergyConsumption = lambda h: 123_456
    m.nvmlDeviceGetPowerUsage = lambda h: 312_500
    m.nvmlDeviceGetClockInfo = lambda h, c: 1755
    m.nvmlDeviceGetTemperature = lambda h, t: 51
    m.nvmlDeviceGetPowerManagementLimit = lambda h: 700_000
    m.nvmlDeviceGetPowerManagementLimitConstraints = lambda h: (200_000, 700_000)
    m.nvmlDeviceGetPowerManagementDefaultLimit = lambda h: 700_000
    m.nvmlDeviceSetPowerManagementLimit = lambda h, mw: calls.append(("set", h, mw))
    return m


def test_nvml_backend_units_and_calls(monkeypatch):
    calls: list = []
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml(calls))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    b = NvmlBackend()
    assert calls == ["init"]
    assert b.device_name(0) == "NVIDIA H100 80GB HBM3"
    assert b.energy_mj(0) == 123_456.0
    assert b.power_w(0) == 312.5
    assert b.power_limit_w(0) == 700.0
    assert b.power_limit_constraints_w(0) == (200.0, 700.0)
    assert b.sm_clock_mhz(0) == 1755.0 and b.temperature_c(0) == 51.0
    info = b.device_info(0)
    assert info["driver"] == "570.1" and info["default_power_limit_w"] == 700.0
    with power_cap(b, 450.0, allow=True):
        pass
    assert calls[-2:] == [("set", ("h", 0), 450_000), ("set", ("h", 0), 700_000)]
    b.close()
    assert calls[-1] == "shutdown"


def test_nvml_backend_maps_cuda_visible_devices(monkeypatch):
    calls: list = []
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml(calls))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,GPU-abc")
    b = NvmlBackend()
    assert b._handle(0) == ("h", 3)
    assert b._handle(1) == ("u", "GPU-abc")


def test_nvml_without_counter_reports_none(monkeypatch):
    calls: list = []
    fake = _fake_pynvml(calls)

    def unsupported(h):
        raise RuntimeError("NVML_ERROR_NOT_SUPPORTED")

    fake.nvmlDeviceGetTotalEnergyConsumption = unsupported
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    b = NvmlBackend()
    assert b.energy_mj(0) is None
    assert b.power_w(0) == 312.5


def _gpu_energy_fixture(request):
    """A fresh ``gpu_energy`` fixture (after the test's monkeypatching of pynvml)."""
    return request.getfixturevalue("gpu_energy")


def test_gpu_energy_fixture_without_nvml_is_nan_with_the_reason(monkeypatch, request):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml fails: no NVML here
    gpu_energy = _gpu_energy_fixture(request)
    with gpu_energy("sleep") as m:
        time.sleep(0.01)
    assert m.measurement is not None and m.time_s >= 0.01
    assert m.energy_source == "unavailable"
    assert math.isnan(m.energy_j) and m.note.startswith("power unavailable:")


def test_gpu_energy_fixture_reads_the_energy_counter(monkeypatch, request):
    """A fake NVML whose energy counter reads 100 J, then 142.5 J: the block's energy is the
    difference of the counter's readings at the window's start and end, 42.5 J."""
    calls: list = []
    fake = _fake_pynvml(calls)
    readings = iter([100_000, 142_500])  # mJ
    fake.nvmlDeviceGetTotalEnergyConsumption = lambda h: next(readings)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    gpu_energy = _gpu_energy_fixture(request)
    with gpu_energy("sleep") as m:
        time.sleep(0.01)
    assert m.energy_source == "counter"
    assert m.time_s >= 0.01
    assert m.energy_j == pytest.approx(42.5)


def test_measuring_modules_do_not_import_torch_at_import_time():
    code = (
        "import sys\n"
        "import characterize, characterize.modeling.specs, characterize.measure.power, characterize.measure.models\n"
        "import characterize.measure.models.shard, characterize.measure.pytest_plugin\n"
        "import characterize.modeling.phase_model\n"
        "heavy = [m for m in ('torch', 'transformers', 'pynvml') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
