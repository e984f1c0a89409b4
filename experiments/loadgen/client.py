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
the whole run. Failures are records, not exceptions: HTTP errors, dropped streams, timeouts,
short answers and stream chunks that are not completion chunks (bad JSON, or JSON of another
shape: :func:`parse_chunk`) get a ``status`` and a ``reason`` and the run goes on; no request
leaves the accounting (an unexpected client-side exception is an ``error`` record too).
``stop`` (an asyncio Event, set by Ctrl-C) stops the run at any moment: during the probe or the
warm-up (``RunState.phase`` says where) or the run; requests in flight are cancelled at once and
recorded as ``interrupted``. The records so far are handed to ``on_progress`` every
``checkpoint_s`` seconds from a ticker of their own (written in a worker thread from a copy, so
the event loop keeps stamping tokens), and once at the end; a failing checkpoint stops the run
and its exception is raised. Uses aiohttp; nothing here parses HTTP by hand (SSE lines are split
on ``data:`` as the event-stream format defines).
"""

from __future__ import annotations

import asyncio
import copy
import json
import math
import sys
import time
from collections.abc import Awaitable, Callable
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


def _snippet(text: str, n: int = 60) -> str:
    """The start of a text on one line (for messages quoting what a server sent)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= n else flat[: n - 3] + "..."


async def probe(session: aiohttp.ClientSession, opts: ClientOptions) -> str:
    """The model name to use; LoadgenError (one line) when the endpoint or model is wrong.

    "cannot reach" only when no HTTP answer came; an answer that is not an OpenAI model list
    (an HTML page, JSON of another shape, model ids that are not strings) is quoted."""
    url = opts.base_url.rstrip("/") + "/v1/models"
    try:
        async with session.get(
            url, timeout=aiohttp.ClientTimeout(total=opts.connect_timeout_s * 2)
        ) as r:
            status = r.status
            ctype = r.headers.get("Content-Type", "") or "no content type"
            text = (await r.read()).decode("utf-8", "replace")
    except (TimeoutError, aiohttp.ClientError, OSError) as e:
        raise LoadgenError(
            f"target.base_url: cannot reach {url} ({_one_line(e) or 'timeout'})"
        ) from None
    if status != 200:
        raise LoadgenError(f"target.base_url: {url} answered HTTP {status}")
    try:
        data = json.loads(text)
    except ValueError:
        raise LoadgenError(
            f"target.base_url: {url} answered HTTP 200 with {ctype.split(';')[0]}, not JSON: "
            f"'{_snippet(text)}' (not an OpenAI-compatible server?)"
        ) from None
    try:
        names = [m["id"] for m in data["data"]]
    except (KeyError, TypeError, IndexError):
        raise LoadgenError(
            f"target.base_url: {url} is not an OpenAI model list: '{_snippet(text)}'"
        ) from None
    bad = [x for x in names if not isinstance(x, str)]
    if bad:
        raise LoadgenError(
            f"target.base_url: {url} is not an OpenAI model list "
            f"(model id {_snippet(json.dumps(bad[0]))} is not a string)"
        )
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


class BadChunk(ValueError):
    """A stream chunk that is JSON but not a completion chunk (its message: what is wrong)."""


def _count(usage: dict, key: str) -> int:
    """``usage[key]`` (-1 when absent); BadChunk when present but not a count."""
    if key not in usage:
        return -1
    v = usage[key]
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise BadChunk(f"usage.{key} is {_snippet(json.dumps(v), 30)}, not a count")
    return v


def parse_chunk(chunk) -> tuple[int, int, int]:
    """(tokens, usage prompt tokens, usage completion tokens) of one parsed ``data:`` chunk;
    the usage counts are -1 when the chunk has none. A chunk carrying token ids counts them,
    else it is one token (vLLM streams one chunk per token without ids). BadChunk when the JSON
    is not the shape of a completion chunk (not an object, ``choices`` not a list of objects,
    ``token_ids`` not a list, ``usage`` not an object of counts)."""
    if not isinstance(chunk, dict):
        raise BadChunk(f"a JSON {type(chunk).__name__}, not an object")
    choices = chunk.get("choices")
    if choices is None:
        choices = []
    if not isinstance(choices, list):
        raise BadChunk("choices is not a list")
    k = 0
    if choices:
        c = choices[0]
        if not isinstance(c, dict):
            raise BadChunk("choices[0] is not an object")
        ids = c.get("token_ids")
        if ids is None:
            k = 1
        elif isinstance(ids, list):
            k = len(ids)
        else:
            raise BadChunk("choices[0].token_ids is not a list")
    usage = chunk.get("usage")
    if usage is None:
        return k, -1, -1
    if not isinstance(usage, dict):
        raise BadChunk("usage is not an object")
    return k, _count(usage, "prompt_tokens"), _count(usage, "completion_tokens")


async def send_one(
    session: aiohttp.ClientSession,
    opts: ClientOptions,
    model: str,
    rec: Record,
    t0: float,
) -> Record:
    """Send one request and fill ``rec``: it always ends with a final status and, unless ok, a
    reason (never raises except on cancellation; the caller records that)."""
    rec.sent_s = time.perf_counter() - t0
    rec.status = "in_flight"  # what a checkpoint written meanwhile shows
    try:
        await _exchange(session, opts, model, rec, t0)
    except TimeoutError:
        rec.status, rec.reason = (
            "timeout",
            f"no complete answer within {opts.request_timeout_s:g} s",
        )
    except (aiohttp.ClientError, OSError) as e:
        rec.status, rec.reason = "dropped", _one_line(e)
    except BadChunk as e:
        rec.status, rec.reason = "error", f"bad stream chunk: {e}"
    except Exception as e:  # noqa: BLE001 - nothing may leave the accounting
        rec.status, rec.reason = "error", f"client: {_one_line(e)}"
    return rec


async def _exchange(
    session: aiohttp.ClientSession, opts: ClientOptions, model: str, rec: Record, t0: float
) -> None:
    url = opts.base_url.rstrip("/") + "/v1/completions"
    body = request_body(opts, model, rec.request_id, rec.prompt_tokens, rec.output_tokens)
    timeout = aiohttp.ClientTimeout(
        total=opts.request_timeout_s, sock_connect=opts.connect_timeout_s
    )
    done = False
    async with session.post(url, json=body, timeout=timeout) as r:
        rec.http_status = r.status
        if r.status != 200:
            text = (await r.read()).decode("utf-8", "replace")[:200].replace("\n", " ")
            rec.status, rec.reason = "error", f"HTTP {r.status}: {text}"
            return
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
                raise BadChunk(f"not JSON: {_snippet(data, 80)}") from None
            if isinstance(chunk, dict) and "error" in chunk and not chunk.get("choices"):
                err = chunk["error"]
                msg = err.get("message", err) if isinstance(err, dict) else err
                rec.status, rec.reason = "error", f"stream error: {str(msg)[:160]}"
                return
            try:
                k, up, uc = parse_chunk(chunk)
            except BadChunk as e:
                raise BadChunk(f"{e}: {_snippet(data, 80)}") from None
            if up >= 0:
                rec.usage_prompt_tokens = up
            if uc >= 0:
                rec.usage_completion_tokens = uc
            rec.token_times_s.extend([now] * k)
    if not done:
        rec.status = "dropped"
        rec.reason = f"stream ended without [DONE] after {len(rec.token_times_s)} tokens"
        return
    n = len(rec.token_times_s)
    if n == 0:
        rec.status, rec.reason = "error", "no token streamed"
    elif n < rec.output_tokens:
        rec.status, rec.reason = "short", f"{n} of {rec.output_tokens} tokens"
    else:
        rec.status, rec.reason = "ok", ""


@dataclass
class RunState:
    records: list[Record]
    t0: float = 0.0
    lag_warnings: int = 0
    max_lag_s: float = 0.0
    stopped_by: str = ""  # "", "interrupt", "max_duration_s"
    model: str = ""
    phase: str = "probe"  # probe | warm-up | run | done: where the run is (or was stopped)

    @property
    def started(self) -> bool:
        """Whether the trace's requests began to be sent (the probe and warm-up are done)."""
        return self.phase in ("run", "done")

    def snapshot(self) -> RunState:
        """A copy whose records do not change while the run goes on (for a checkpoint)."""
        recs = []
        for r in self.records:
            c = copy.copy(r)
            c.token_times_s = list(r.token_times_s)
            recs.append(c)
        c = copy.copy(self)
        c.records = recs
        return c


class _Stopped(Exception):  # noqa: N818 - a stop, not an error
    """``stop`` was set while waiting (internal to :func:`replay`)."""


async def _unless_stopped(aw: Awaitable, stop: asyncio.Event):
    """The result of ``aw``, or _Stopped (``aw`` cancelled at once) when ``stop`` is set first."""
    task = asyncio.ensure_future(aw)
    waiter = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    if task.cancelled():
        raise _Stopped
    return task.result()


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
    doc); returns the state with every record filled (``stopped_by`` = "interrupt" when
    ``stop`` was set, at any phase). ``on_start`` is called once the endpoint answered and the
    warm-up is done; ``on_progress`` is called with a copy of the state every ``checkpoint_s``
    seconds of the run (in a worker thread) and with the state at the end, once the run
    started (the app writes the records so far there). An exception of ``on_progress`` or
    ``on_start`` stops the run (requests in flight cancelled) and is raised."""
    stop = stop or asyncio.Event()
    if opts.max_requests is not None:
        plan = plan[: opts.max_requests]
    state = RunState(records=plan)
    loop = asyncio.get_running_loop()
    if install_sigint:
        import signal

        loop.add_signal_handler(signal.SIGINT, stop.set)
    tasks: list[asyncio.Task] = []
    closing = asyncio.Event()
    failure: list[BaseException] = []
    ticker: asyncio.Task | None = None

    async def checkpoints():
        while True:
            try:
                await asyncio.wait_for(closing.wait(), timeout=checkpoint_s)
                return
            except TimeoutError:
                pass
            try:
                await asyncio.to_thread(on_progress, state.snapshot())
            except Exception as e:  # noqa: BLE001 - raised by replay once the run is stopped
                failure.append(e)
                stop.set()
                return

    connector = aiohttp.TCPConnector(limit=max(opts.max_outstanding, 1) + 2, force_close=False)
    try:
        async with aiohttp.ClientSession(connector=connector) as session:
            try:
                state.model = await _unless_stopped(probe(session, opts), stop)
                state.phase = "warm-up"
                for w in warmup or []:
                    await _unless_stopped(
                        send_one(session, opts, state.model, w, time.perf_counter()), stop
                    )
                    if w.status not in ("ok", "short"):
                        raise LoadgenError(f"warm-up request failed: {w.status}: {w.reason}")
                if stop.is_set():
                    raise _Stopped
                if on_start is not None:
                    on_start(state)
                state.phase = "run"
                state.t0 = time.perf_counter()
                if on_progress is not None:
                    ticker = asyncio.create_task(checkpoints())
                await _send_all(session, opts, plan, state, stop, tasks)
            except _Stopped:
                state.stopped_by = "interrupt"
            finally:
                # Ctrl-C, an error or a failed checkpoint: cancel every request still in flight
                pending = [t for t in tasks if not t.done()]
                for t in pending:
                    t.cancel()
                if pending:
                    await asyncio.gather(*pending, return_exceptions=True)
                closing.set()
                if ticker is not None:
                    await asyncio.gather(ticker, return_exceptions=True)
    finally:
        if install_sigint:
            import signal

            loop.remove_signal_handler(signal.SIGINT)
    if failure:
        raise failure[0]
    if state.started:
        state.phase = "done"
        if on_progress is not None:
            on_progress(state)
    return state


async def _send_all(
    session: aiohttp.ClientSession,
    opts: ClientOptions,
    plan: list[Record],
    state: RunState,
    stop: asyncio.Event,
    tasks: list[asyncio.Task],
) -> None:
    """The open-loop run: send each request at its time, then wait for those in flight (both
    cut short by ``stop``)."""
    sem = asyncio.Semaphore(opts.max_outstanding)

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
            raise _Stopped
        await _unless_stopped(sem.acquire(), stop)
        if stop.is_set():
            sem.release()
            raise _Stopped
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
    pending = [t for t in tasks if not t.done()]
    if pending:
        await _unless_stopped(asyncio.wait(pending), stop)
