"""Open-loop replay of a trace against an OpenAI-compatible ``/v1/completions`` endpoint.

One request per trace row, sent at ``t0 + arrival_s / speedup`` whether or not earlier requests
have finished (open loop). Each request asks for exactly ``output_tokens`` tokens
(``max_tokens`` = ``min_tokens`` = output length, ``ignore_eos``), streams the answer, and the
client stamps every streamed chunk on arrival (``time.perf_counter``). A chunk carrying k tokens
(``token_ids`` when the server returns them, else one token per chunk) stamps k tokens at once.

Prompts:
- ``prompt_mode="ids"``: a list of ``prompt_tokens`` random token ids (seeded per request), so
  the prompt length is exact;
- ``prompt_mode="text"``: ``prompt_tokens`` random words from a fixed list, for servers that
  take no ids; the server's ``usage.prompt_tokens`` is recorded beside the asked length.

Limits: at most ``max_outstanding`` requests in flight (a request due while the limit is hit
waits and is sent late: its lag is recorded, and a warning is printed when the lag passes
``lag_warn_s``), ``request_timeout_s`` per request, ``max_requests`` and ``max_duration_s`` for
the whole run. Failures are records, not exceptions: HTTP errors, dropped streams, timeouts and
short answers get a ``status`` and a ``reason`` and the run goes on. ``stop`` (an asyncio
Event, set by Ctrl-C) stops sending; requests in flight are cancelled and recorded as
``interrupted``. Uses aiohttp; nothing here parses HTTP by hand (SSE lines are split on
``data:`` as the event-stream format defines).
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
import numpy as np

#: statuses of a record; only "ok" and "short" have token times
STATUSES = ("ok", "short", "error", "dropped", "timeout", "interrupted", "in_flight", "not_sent")
WORDS = (
    "the of and to in is was for on that with as by at from his her an are it this be which "
    "or had not but have they one were their all been has more when who would there she can"
).split()


class LoadgenError(RuntimeError):
    """A one-line error before the run (endpoint unreachable, unknown model, bad trace)."""


@dataclass(frozen=True)
class ClientOptions:
    base_url: str
    model: str | None = None
    prompt_mode: str = "ids"  # ids | text
    vocab_size: int = 32000
    min_token_id: int = 100  # ids below this are often special tokens
    ignore_eos: bool = True
    send_min_tokens: bool = True
    return_token_ids: bool = True  # vLLM: each chunk lists its token ids (exact counts)
    max_outstanding: int = 64
    request_timeout_s: float = 120.0
    connect_timeout_s: float = 5.0
    lag_warn_s: float = 0.5
    speedup: float = 1.0
    max_requests: int | None = None
    max_duration_s: float | None = None
    seed: int = 0
    extra_body: dict = field(default_factory=dict)


@dataclass
class Record:
    """One request's outcome; times in seconds from the run's t0 (scheduled clock)."""

    request_id: int
    arrival_s: float  # scheduled send time (trace arrival / speedup)
    prompt_tokens: int
    output_tokens: int  # asked for
    sent_s: float = math.nan
    token_times_s: list = field(default_factory=list)  # absolute (t0-relative) arrival times
    status: str = "not_sent"
    reason: str = ""
    http_status: int = 0
    usage_prompt_tokens: int = -1
    usage_completion_tokens: int = -1

    @property
    def lag_s(self) -> float:
        return self.sent_s - self.arrival_s


def make_prompt(opts: ClientOptions, request_id: int, n: int):
    """The prompt of one request: ``n`` seeded random ids (or words in text mode)."""
    rng = np.random.default_rng([opts.seed, abs(request_id), int(request_id < 0)])
    if opts.prompt_mode == "text":
        idx = rng.integers(0, len(WORDS), size=n)
        return " ".join(WORDS[i] for i in idx)
    return rng.integers(opts.min_token_id, opts.vocab_size, size=n).tolist()


def request_body(opts: ClientOptions, model: str, request_id: int, prompt_n: int, out_n: int):
    body = {
        "model": model,
        "prompt": make_prompt(opts, request_id, prompt_n),
        "max_tokens": int(out_n),
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0.0,
    }
    if opts.ignore_eos:
        body["ignore_eos"] = True
    if opts.send_min_tokens:
        body["min_tokens"] = int(out_n)
    if opts.return_token_ids:
        body["return_token_ids"] = True
    body.update(opts.extra_body)
    return body


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


async def probe(session: aiohttp.ClientSession, opts: ClientOptions) -> str:
    """The model name to use; LoadgenError (one line) when the endpoint or model is wrong."""
    url = opts.base_url.rstrip("/") + "/v1/models"
    try:
        async with session.get(
            url, timeout=aiohttp.ClientTimeout(total=opts.connect_timeout_s * 2)
        ) as r:
            if r.status != 200:
                raise LoadgenError(f"target.base_url: {url} answered HTTP {r.status}")
            data = await r.json(content_type=None)
    except LoadgenError:
        raise
    except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as e:
        raise LoadgenError(
            f"target.base_url: cannot reach {url} ({_one_line(e) or 'timeout'})"
        ) from None
    try:
        names = [m["id"] for m in data["data"]]
    except (KeyError, TypeError):
        raise LoadgenError(f"target.base_url: {url} is not an OpenAI model list") from None
    if opts.model is None:
        if not names:
            raise LoadgenError(f"target.model: {url} serves no model")
        return names[0]
    if opts.model not in names:
        raise LoadgenError(
            f"target.model: '{opts.model}' is not served at {opts.base_url} "
            f"(served: {', '.join(names) or 'none'})"
        )
    return opts.model


def _chunk_tokens(chunk: dict) -> int:
    choices = chunk.get("choices") or []
    if not choices:
        return 0
    c = choices[0]
    ids = c.get("token_ids")
    if isinstance(ids, list):
        return len(ids)
    return 1  # one streamed chunk per generated token (vLLM's stream without token ids)


async def send_one(
    session: aiohttp.ClientSession,
    opts: ClientOptions,
    model: str,
    rec: Record,
    t0: float,
) -> Record:
    """Send one request and fill ``rec`` (never raises except on cancellation)."""
    url = opts.base_url.rstrip("/") + "/v1/completions"
    body = request_body(opts, model, rec.request_id, rec.prompt_tokens, rec.output_tokens)
    timeout = aiohttp.ClientTimeout(
        total=opts.request_timeout_s, sock_connect=opts.connect_timeout_s
    )
    rec.sent_s = time.perf_counter() - t0
    rec.status = "in_flight"  # what a checkpoint written meanwhile shows
    done = False
    try:
        async with session.post(url, json=body, timeout=timeout) as r:
            rec.http_status = r.status
            if r.status != 200:
                text = (await r.text())[:200].replace("\n", " ")
                rec.status, rec.reason = "error", f"HTTP {r.status}: {text}"
                return rec
            async for raw in r.content:
                now = time.perf_counter() - t0
                line = raw.decode("utf-8", "replace").strip()
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    done = True
                    break
                try:
                    chunk = json.loads(data)
                except ValueError:
                    rec.status, rec.reason = "error", f"bad stream chunk: {data[:80]}"
                    return rec
                if "error" in chunk and not chunk.get("choices"):
                    err = chunk["error"]
                    msg = err.get("message", err) if isinstance(err, dict) else err
                    rec.status, rec.reason = "error", f"stream error: {str(msg)[:160]}"
                    return rec
                usage = chunk.get("usage")
                if usage:
                    rec.usage_prompt_tokens = int(usage.get("prompt_tokens", -1))
                    rec.usage_completion_tokens = int(usage.get("completion_tokens", -1))
                k = _chunk_tokens(chunk)
                rec.token_times_s.extend([now] * k)
    except TimeoutError:
        rec.status, rec.reason = (
            "timeout",
            f"no complete answer within {opts.request_timeout_s:g} s",
        )
        return rec
    except (aiohttp.ClientError, OSError) as e:
        rec.status, rec.reason = "dropped", _one_line(e)
        return rec
    if not done:
        rec.status = "dropped"
        rec.reason = f"stream ended without [DONE] after {len(rec.token_times_s)} tokens"
        return rec
    n = len(rec.token_times_s)
    if n == 0:
        rec.status, rec.reason = "error", "no token streamed"
    elif n < rec.output_tokens:
        rec.status, rec.reason = "short", f"{n} of {rec.output_tokens} tokens"
    else:
        rec.status = "ok"
    return rec


@dataclass
class RunState:
    records: list[Record]
    t0: float = 0.0
    lag_warnings: int = 0
    max_lag_s: float = 0.0
    stopped_by: str = ""  # "", "interrupt", "max_duration_s"
    model: str = ""


async def replay(
    plan: list[Record],
    opts: ClientOptions,
    *,
    stop: asyncio.Event | None = None,
    on_progress: Callable[[RunState], None] | None = None,
    checkpoint_s: float = 10.0,
    warmup: list[Record] | None = None,
    install_sigint: bool = False,
    on_start: Callable[[RunState], None] | None = None,
) -> RunState:
    """Probe the endpoint, run ``warmup`` one by one, then send ``plan`` open-loop (see module
    doc); returns the state with every record filled. ``on_start`` is called once the endpoint
    answered and the warm-up is done; ``on_progress`` is called about every
    ``checkpoint_s`` seconds and at the end (the app writes the records so far there)."""
    stop = stop or asyncio.Event()
    if opts.max_requests is not None:
        plan = plan[: opts.max_requests]
    state = RunState(records=plan)
    loop = asyncio.get_running_loop()
    if install_sigint:
        import signal

        loop.add_signal_handler(signal.SIGINT, stop.set)
    connector = aiohttp.TCPConnector(limit=max(opts.max_outstanding, 1) + 2, force_close=False)
    try:
        async with aiohttp.ClientSession(connector=connector) as session:
            state.model = await probe(session, opts)
            for w in warmup or []:
                await send_one(session, opts, state.model, w, time.perf_counter())
                if w.status not in ("ok", "short"):
                    raise LoadgenError(f"warm-up request failed: {w.status}: {w.reason}")
            if on_start is not None:
                on_start(state)
            sem = asyncio.Semaphore(opts.max_outstanding)
            tasks: list[asyncio.Task] = []
            state.t0 = time.perf_counter()
            last_ck = 0.0

            async def guarded(rec: Record):
                try:
                    return await send_one(session, opts, state.model, rec, state.t0)
                except asyncio.CancelledError:
                    rec.status, rec.reason = "interrupted", "run stopped while in flight"
                    rec.token_times_s.clear()
                    raise
                finally:
                    sem.release()

            for rec in plan:
                due = rec.arrival_s
                if opts.max_duration_s is not None and due > opts.max_duration_s:
                    state.stopped_by = "max_duration_s"
                    break
                wait = due - (time.perf_counter() - state.t0)
                if wait > 0:
                    try:
                        await asyncio.wait_for(stop.wait(), timeout=wait)
                    except TimeoutError:
                        pass
                if stop.is_set():
                    state.stopped_by = "interrupt"
                    break
                await sem.acquire()
                lag = (time.perf_counter() - state.t0) - due
                if lag > opts.lag_warn_s and lag > state.max_lag_s + opts.lag_warn_s:
                    state.lag_warnings += 1
                    print(
                        f"warning: request {rec.request_id} sent {lag:.2f} s behind schedule "
                        f"({opts.max_outstanding} outstanding at most)",
                        file=sys.stderr,
                    )
                state.max_lag_s = max(state.max_lag_s, lag)
                tasks.append(asyncio.create_task(guarded(rec)))
                now = time.perf_counter() - state.t0
                if on_progress is not None and now - last_ck >= checkpoint_s:
                    last_ck = now
                    on_progress(state)
            pending = [t for t in tasks if not t.done()]
            while pending and not stop.is_set():
                waiter = asyncio.ensure_future(stop.wait())
                done, _ = await asyncio.wait(
                    [*pending, waiter], timeout=checkpoint_s, return_when=asyncio.FIRST_COMPLETED
                )
                waiter.cancel()
                pending = [t for t in tasks if not t.done()]
                now = time.perf_counter() - state.t0
                if on_progress is not None and now - last_ck >= checkpoint_s:
                    last_ck = now
                    on_progress(state)
            if pending:
                state.stopped_by = state.stopped_by or "interrupt"
                for t in pending:
                    t.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
    finally:
        if install_sigint:
            import signal

            loop.remove_signal_handler(signal.SIGINT)
    if on_progress is not None:
        on_progress(state)
    return state
