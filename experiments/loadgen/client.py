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
on ``data:`` as the event-stream format defines). One request's exchange, the options and the
record are :mod:`experiments.loadgen.request` (their names are importable from here too).
"""

from __future__ import annotations

import asyncio
import copy
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp

from experiments.loadgen.request import (
    STATUSES,
    WORDS,
    BadChunk,
    ClientOptions,
    LoadgenError,
    Record,
    make_prompt,
    parse_chunk,
    probe,
    request_body,
    send_one,
)

__all__ = [
    "STATUSES",
    "WORDS",
    "BadChunk",
    "ClientOptions",
    "LoadgenError",
    "Record",
    "RunState",
    "make_prompt",
    "parse_chunk",
    "probe",
    "replay",
    "request_body",
    "send_one",
]


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


async def _probe_and_warm_up(
    session: aiohttp.ClientSession,
    opts: ClientOptions,
    state: RunState,
    warmup: list[Record],
    stop: asyncio.Event,
) -> None:
    """The model name from the probe, then the warm-up requests one by one (a failed one is a
    LoadgenError); _Stopped when ``stop`` is set meanwhile."""
    state.model = await _unless_stopped(probe(session, opts), stop)
    state.phase = "warm-up"
    for w in warmup:
        await _unless_stopped(send_one(session, opts, state.model, w, time.perf_counter()), stop)
        if w.status not in ("ok", "short"):
            raise LoadgenError(f"warm-up request failed: {w.status}: {w.reason}")
    if stop.is_set():
        raise _Stopped


async def _checkpoints(
    state: RunState,
    on_progress: Callable[[RunState], None],
    checkpoint_s: float,
    closing: asyncio.Event,
    stop: asyncio.Event,
    failure: list[BaseException],
) -> None:
    """Hand a copy of the state to ``on_progress`` (in a worker thread) every ``checkpoint_s``
    until ``closing``; a failing checkpoint is kept in ``failure`` and stops the run (replay
    raises it)."""
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
    connector = aiohttp.TCPConnector(limit=max(opts.max_outstanding, 1) + 2, force_close=False)
    try:
        async with aiohttp.ClientSession(connector=connector) as session:
            try:
                await _probe_and_warm_up(session, opts, state, warmup or [], stop)
                if on_start is not None:
                    on_start(state)
                state.phase = "run"
                state.t0 = time.perf_counter()
                if on_progress is not None:
                    ticker = asyncio.create_task(
                        _checkpoints(state, on_progress, checkpoint_s, closing, stop, failure)
                    )
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
