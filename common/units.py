"""Unit conversions: the one place in the suite where units change.

Internal units everywhere: seconds, bytes, bytes/second, FLOP/s, watts, joules,
dollars per hour. Convert at the edges (file readers, printed tables) with these.
"""

from __future__ import annotations

MS_PER_S = 1_000.0
US_PER_S = 1_000_000.0
MILLI_PER_UNIT = 1_000.0  # NVML reports milliwatts and millijoules
W_PER_KW = 1_000.0
KIB = 1024
MIB = 1024**2
GB = 1_000_000_000  # decimal gigabyte, as vendors quote HBM bandwidth and capacity
GIB = 1024**3
TB = 1_000_000_000_000
TERA = 1e12
GIGA = 1e9
S_PER_MINUTE = 60.0
S_PER_HOUR = 3_600.0
J_PER_KWH = 3_600_000.0


def ms_to_s(ms: float) -> float:
    """Milliseconds to seconds."""
    return ms / MS_PER_S


def s_to_ms(s: float) -> float:
    """Seconds to milliseconds."""
    return s * MS_PER_S


def mw_to_w(mw: float) -> float:
    """Milliwatts (NVML) to watts."""
    return mw / MILLI_PER_UNIT


def mj_to_j(mj: float) -> float:
    """Millijoules (NVML energy counter) to joules."""
    return mj / MILLI_PER_UNIT


def w_to_mw(w: float) -> float:
    """Watts to milliwatts (NVML power limits)."""
    return w * MILLI_PER_UNIT


def w_to_kw(w: float) -> float:
    """Watts to kilowatts (printed tables)."""
    return w / W_PER_KW


def gbps_to_bytes_per_s(gbit_per_s: float) -> float:
    """Network gigabits per second (decimal) to bytes per second."""
    return gbit_per_s * GIGA / 8.0


def gb_to_bytes(gb: float) -> float:
    """Decimal gigabytes to bytes."""
    return gb * GB


def bytes_to_gb(n: float) -> float:
    """Bytes to decimal gigabytes (printed sizes)."""
    return n / GB


def bytes_to_gib(n: float) -> float:
    """Bytes to binary gibibytes (printed sizes)."""
    return n / GIB


def gib_to_bytes(gib: float) -> float:
    """Binary gibibytes to bytes."""
    return gib * GIB


def tbps_to_bytes_per_s(tb_per_s: float) -> float:
    """Terabytes per second (decimal, HBM datasheets) to bytes per second."""
    return tb_per_s * TB


def bytes_per_s_to_tbps(b_per_s: float) -> float:
    """Bytes per second to terabytes per second (decimal)."""
    return b_per_s / TB


def tflops_to_flops(tflops: float) -> float:
    """TFLOP/s to FLOP/s."""
    return tflops * TERA


def flops_to_tflops(flops: float) -> float:
    """FLOP/s to TFLOP/s."""
    return flops / TERA


def joules_to_kwh(j: float) -> float:
    """Joules to kilowatt-hours."""
    return j / J_PER_KWH


def hours_to_s(h: float) -> float:
    """Hours to seconds."""
    return h * S_PER_HOUR
