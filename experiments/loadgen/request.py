"""One request on the wire of an OpenAI-compatible ``/v1/completions`` endpoint: the options,
the record a request fills, the prompt (seeded random ids or words), the probe of
``/v1/models``, and one streamed exchange stamped chunk by chunk (:func:`send_one`; a chunk
that is not a completion chunk is :class:`BadChunk`, see :func:`parse_chunk`). The run that
sends a whole trace open-loop is :mod:`experiments.loadgen.client`.
"""

from __future__ import annotations

import json
import math
import time
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
    #: the instance a router sent the request to (its ``X-Backend`` response header; -1: none)
    backend: int = -1
    #: a disaggregated proxy's prefill-leg wall time (its ``X-Prefill-Seconds`` header), s
    prefill_leg_s: float = math.nan

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


def routing_headers(headers) -> tuple[int, float]:
    """(backend index, prefill-leg seconds) from a response's ``X-Backend`` and
    ``X-Prefill-Seconds`` headers (the validation's router and proxy send them); -1 / NaN when a
    header is absent or not a number (a server's extra header never fails a request)."""
    b = headers.get("X-Backend", "")
    backend = int(b) if b.isdigit() else -1
    try:
        leg = float(headers.get("X-Prefill-Seconds", "nan"))
    except ValueError:
        leg = math.nan
    return backend, leg if math.isfinite(leg) and leg >= 0 else math.nan


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
        rec.backend, rec.prefill_leg_s = routing_headers(r.headers)
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
