"""The client side of vLLM's streamed completions, shared by the probes and the KV calibration:
each server-sent ``data:`` event as a JSON object, up to ``[DONE]``, and the one-line error of a
non-200 answer."""

from __future__ import annotations

import json

from experiments.validation.errors import StepError


async def check_ok(r, step: str, url: str) -> None:
    """StepError naming the URL and the start of the body unless ``r`` answered HTTP 200."""
    if r.status != 200:
        raw = await r.read()
        raise StepError(step, f"{url}: HTTP {r.status}: {raw[:200].decode('utf-8', 'replace')}")


async def events(r):
    """The stream's ``data:`` events as JSON objects (other lines skipped), until ``[DONE]``.
    vLLM without a tokenizer sends one event per token, its text empty."""
    async for line in r.content:
        s = line.strip()
        if not s.startswith(b"data:"):
            continue
        data = s[5:].strip()
        if data == b"[DONE]":
            return
        yield json.loads(data)
