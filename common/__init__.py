"""Torch-free leaf helpers shared by every package: atomic writes, units, one-line errors.

Nothing here imports another splitbench package, so traces/ can use it without characterize/.
"""
