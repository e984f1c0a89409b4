"""Test helper: the tiny phase model the replay tests price by hand (an H100-named linear model,
used for both GPUs of the named designs), written once."""

from __future__ import annotations

from replay import LinearPhaseModel

H100 = LinearPhaseModel(
    gpu="h100-80gb",
    prefill_base_s=0.02,
    prefill_per_request_s=0.001,
    prefill_per_token_s=6e-5,
    prefill_per_token_sq_s=2e-9,
    decode_base_s=0.025,
    decode_per_request_s=2e-4,
    decode_per_context_token_s=3e-8,
)
#: the phase models of the named designs' GPUs: this one model for both
PMS = {"h100-80gb": H100, "a100-80gb": H100}
