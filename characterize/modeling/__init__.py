"""Torch-free modelling of one phase on one GPU: specs, profile tables, the all-reduce model,
the fitted PhaseModel. The simulator imports only this sub-package of characterize/.
"""
