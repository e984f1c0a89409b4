"""Measuring one phase on one GPU: the phase profiler, the NVML power monitor, the model
engines (torch, imported lazily) and the pytest plugin.
"""
