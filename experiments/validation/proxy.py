"""The disaggregated-prefill proxy: an aiohttp service in front of one prefill and one decode
vLLM instance (the two-step protocol of vLLM's disaggregated-prefill examples).

For each ``POST /v1/completions``:
1. the request goes to the prefill instance with ``max_tokens=1``, not streamed (``min_tokens``
   and ``stream_options`` dropped); with ``--kv-params`` (connectors that hand the KV over by
   parameters, e.g. NixlConnector) it carries ``kv_transfer_params={"do_remote_decode": true}``
   and the prefill's returned ``kv_transfer_params`` go on to the decode request. A connector
   that keys the KV by prompt (ExampleConnector: files named by a hash of the prompt's tokens)
   needs no parameters;
2. the original request goes to the decode instance, which loads the KV and generates; its
   response (an SSE stream or JSON) is relayed to the client chunk by chunk as it arrives.

The response carries ``X-Prefill-Seconds`` (the prefill leg's wall time, measured here) so that
a client can split its TTFT into prefill and hand-over. An error of either instance is relayed
with its status (and ``X-Failed-Leg: prefill|decode``).

With ``--backend URL`` (repeated) it is instead the router of a multi-instance co-located
deployment (``baseline2``: one instance per core, the same resources as the disaggregated one):
each request goes whole to the instance with the least pending work (:func:`make_router_app`). ``GET /health`` is 200 when both
instances answer theirs; ``GET /v1/models`` is the decode instance's.

    python -m experiments.validation.proxy --port 8300 \\
        --prefill http://127.0.0.1:8100 --decode http://127.0.0.1:8200
"""

from __future__ import annotations

import argparse
import json
import time
import uuid

_DROP_FOR_PREFILL = ("min_tokens", "stream_options")


def prefill_body(body: dict, kv_params: bool) -> dict:
    """The prefill leg's request: one token, not streamed, KV kept for the decode instance."""
    b = {k: v for k, v in body.items() if k not in _DROP_FOR_PREFILL}
    b["max_tokens"] = 1
    b["stream"] = False
    if kv_params:
        b["kv_transfer_params"] = {
            "do_remote_decode": True,
            "do_remote_prefill": False,
            "remote_engine_id": None,
            "remote_block_ids": None,
            "remote_host": None,
            "remote_port": None,
        }
    return b


def decode_body(body: dict, prefill_response: dict, kv_params: bool) -> dict:
    b = dict(body)
    kvp = prefill_response.get("kv_transfer_params") if kv_params else None
    if kvp:
        b["kv_transfer_params"] = kvp
    return b


def make_app(prefill: str, decode: str, kv_params: bool = False, timeout_s: float = 600.0):
    """The aiohttp application (``prefill``/``decode``: base URLs without ``/v1``)."""
    import aiohttp
    from aiohttp import web

    from experiments.validation.relay import json_response, relay, service, stream_response

    async def completions(request: web.Request, body: dict, s) -> web.StreamResponse:
        rid = request.headers.get("X-Request-Id") or uuid.uuid4().hex
        headers = {"X-Request-Id": rid}
        t0 = time.perf_counter()
        try:
            async with s.post(
                f"{prefill}/v1/completions", json=prefill_body(body, kv_params), headers=headers
            ) as r:
                raw = await r.read()
                if r.status != 200:
                    return json_response(raw, r.status, {"X-Failed-Leg": "prefill"})
                pre = json.loads(raw)
        except (TimeoutError, aiohttp.ClientError, ValueError) as e:
            return web.json_response(
                {"error": f"prefill instance: {type(e).__name__}: {e}"},
                status=502,
                headers={"X-Failed-Leg": "prefill"},
            )
        t_pre = time.perf_counter() - t0
        out_headers = {"X-Prefill-Seconds": f"{t_pre:.6f}", "X-Request-Id": rid}
        resp: web.StreamResponse | None = None
        try:
            async with s.post(
                f"{decode}/v1/completions",
                json=decode_body(body, pre, kv_params),
                headers=headers,
            ) as r:
                if r.status != 200:
                    return json_response(await r.read(), r.status,
                                         {**out_headers, "X-Failed-Leg": "decode"})  # fmt: skip
                resp = stream_response(r, out_headers)
                return await relay(request, resp, r)
        except (TimeoutError, aiohttp.ClientError) as e:
            if resp is None:
                return web.json_response(
                    {"error": f"decode instance: {type(e).__name__}: {e}"},
                    status=502,
                    headers={**out_headers, "X-Failed-Leg": "decode"},
                )
            raise  # mid-stream: the client sees the stream cut, as it would from vLLM

    return service(completions, [prefill, decode], decode, timeout_s)


def request_load(body: dict) -> tuple[int, int]:
    """(prompt tokens, output tokens) a request puts on an instance: token-id prompts count
    their ids, text prompts their words (a router's estimate)."""
    p = body.get("prompt")
    if isinstance(p, list) and p and isinstance(p[0], list):
        p = p[0]
    n = len(p) if isinstance(p, list) else len(str(p or "").split())
    out = body.get("max_tokens")
    return n, int(out) if isinstance(out, int) and out > 0 else 16


class RouterState:
    """Per-backend pending work, as the simulator's ``jsq`` routing counts it for baselines:
    prompt tokens of requests that have no first token yet plus decode tokens still owed."""

    def __init__(self, n: int):
        self.prompt = [0] * n
        self.decode = [0] * n

    def pick(self) -> int:
        loads = [p + d for p, d in zip(self.prompt, self.decode, strict=True)]
        return loads.index(min(loads))

    def admit(self, body: dict) -> Pending:
        """Route ``body`` to the least-loaded backend and count its work there."""
        i = self.pick()
        n_prompt, n_out = request_load(body)
        self.prompt[i] += n_prompt
        self.decode[i] += n_out
        return Pending(self, i, n_prompt, n_out)


class Pending:
    """One routed request's work on backend ``i``: its prompt released at the first chunk, its
    decode tokens as their chunks stream back, the rest when it ends (:meth:`release`)."""

    def __init__(self, state: RouterState, i: int, n_prompt: int, n_out: int):
        self.state, self.i, self.n_prompt, self.n_out = state, i, n_prompt, n_out
        self.first, self.sent = True, 0

    def on_chunk(self, chunk: bytes) -> None:
        if self.first:
            self.state.prompt[self.i] -= self.n_prompt
            self.first = False
        k = min(chunk.count(b"data: {"), self.n_out - self.sent)
        self.state.decode[self.i] -= k
        self.sent += k

    def release(self) -> None:
        if self.first:
            self.state.prompt[self.i] -= self.n_prompt
        self.state.decode[self.i] -= self.n_out - self.sent


def make_router_app(backends: list[str], timeout_s: float = 600.0):
    """The router of a multi-instance co-located deployment: each ``POST /v1/completions`` goes
    whole to the backend with the least pending work (:class:`RouterState`), relayed chunk by
    chunk; ``X-Backend`` names the index chosen. ``GET /health``: 200 when every backend
    answers; ``GET /v1/models``: the first backend's."""
    import aiohttp
    from aiohttp import web

    from experiments.validation.relay import json_response, relay, service, stream_response

    state = RouterState(len(backends))

    async def completions(request: web.Request, body: dict, s) -> web.StreamResponse:
        job = state.admit(body)
        i = job.i
        resp: web.StreamResponse | None = None
        try:
            async with s.post(f"{backends[i]}/v1/completions", json=body) as r:
                if r.status != 200:
                    return json_response(await r.read(), r.status)
                resp = stream_response(r, {"X-Backend": str(i)})
                return await relay(request, resp, r, job.on_chunk)
        except (TimeoutError, aiohttp.ClientError) as e:
            if resp is None:
                return web.json_response({"error": f"backend {i}: {type(e).__name__}: {e}"},
                                         status=502)  # fmt: skip
            raise
        finally:
            job.release()

    return service(completions, list(backends), backends[0] if backends else "", timeout_s)


def main(argv: list[str] | None = None) -> None:
    from aiohttp import web

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--prefill", help="prefill instance base URL")
    ap.add_argument("--decode", help="decode instance base URL")
    ap.add_argument("--backend", action="append", default=[],
                    help="router mode: a co-located instance's base URL (repeat it)")  # fmt: skip
    ap.add_argument("--kv-params", action="store_true", help="pass kv_transfer_params along")
    ap.add_argument("--timeout-s", type=float, default=600.0)
    a = ap.parse_args(argv)
    if a.backend:
        app = make_router_app([b.rstrip("/") for b in a.backend], a.timeout_s)
    elif a.prefill and a.decode:
        app = make_app(a.prefill.rstrip("/"), a.decode.rstrip("/"), a.kv_params, a.timeout_s)
    else:
        ap.error("give --prefill and --decode, or --backend (router mode)")
    web.run_app(app, host=a.host, port=a.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
