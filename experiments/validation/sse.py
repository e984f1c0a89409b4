"""The client side of vLLM's streamed completions, shared by the probes, the speed sentinel and
the KV calibration: each server-sent ``data:`` event as a JSON object, up to ``[DONE]``, the
one-line error of a non-200 answer, and the client's run with every failure as one line."""

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


def run_client(step: str, coro, timeout_s: float, setting: str = ""):
    """Run the client coroutine ``coro`` within ``timeout_s``; its result. Every failure is one
    :class:`StepError` of ``step``: the time bound (naming ``setting``, the option that sets it),
    a connection or aiohttp error, or a StepError raised inside (its reason kept)."""
    import asyncio

    try:
        return asyncio.run(asyncio.wait_for(coro, timeout=timeout_s))
    except TimeoutError:
        why = f"did not finish within {timeout_s:g} s" + (f" ({setting})" if setting else "")
        raise StepError(step, why) from None
    except OSError as e:
        raise StepError(step, f"{type(e).__name__}: {e}") from None
    except StepError as e:
        raise StepError(step, e.reason) from None
    except Exception as e:
        if type(e).__module__.startswith("aiohttp"):
            raise StepError(step, f"{type(e).__name__}: {e}") from None
        raise
