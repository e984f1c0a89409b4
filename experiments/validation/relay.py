"""What the disaggregated-prefill proxy and the co-located router share (:mod:`.proxy`): an
aiohttp service with one client session, ``POST /v1/completions`` given a checked JSON object,
``GET /health`` and ``GET /v1/models`` relayed from the instances, and a backend's response
relayed to the client chunk by chunk as it arrives."""

from __future__ import annotations

#: seconds an idle pooled connection to a backend is kept: below the backends' own keep-alive
#: (vLLM's API server closes an idle connection after VLLM_HTTP_TIMEOUT_KEEP_ALIVE, 5 s; aiohttp
#: keeps one 15 s by default), so a request is never sent on a connection the backend is closing
#: (the race answered ServerDisconnectedError, relayed as a 502: the make validate of 7 Dec 2026
#: 19:08 failed so at a speed sentinel sent about 5 s after the previous rung's last request)
BACKEND_KEEPALIVE_S = 2.0


def json_response(raw: bytes, status: int, headers: dict | None = None):
    """A backend's non-200 answer, relayed with its status (``headers`` added)."""
    from aiohttp import web

    return web.Response(body=raw, status=status, content_type="application/json",
                        headers=headers)  # fmt: skip


def stream_response(r, headers: dict):
    """The client's 200 response for the backend response ``r``: ``headers`` plus the backend's
    ``Content-Type`` (not sent yet: :func:`relay` sends it)."""
    from aiohttp import web

    return web.StreamResponse(status=200, headers={
        **headers, "Content-Type": r.headers.get("Content-Type", "application/json")})  # fmt: skip


async def relay(request, resp, r, on_chunk=None):
    """Send ``resp`` (:func:`stream_response`) and stream the backend response ``r`` into it
    chunk by chunk as it arrives; ``on_chunk(chunk)`` sees each chunk before it is written. A
    backend that fails mid-stream raises here: the client sees the stream cut, as it would from
    vLLM."""
    await resp.prepare(request)
    async for chunk in r.content.iter_any():
        if on_chunk is not None:
            on_chunk(chunk)
        await resp.write(chunk)
    await resp.write_eof()
    return resp


def service(completions, health_bases: list[str], models_base: str, timeout_s: float):
    """The aiohttp application: ``POST /v1/completions`` -> ``await completions(request, body,
    session)`` once the body is a JSON object (400 otherwise); ``GET /health``: 200 when every
    base in ``health_bases`` answers its own; ``GET /v1/models``: ``models_base``'s."""
    import aiohttp
    from aiohttp import web

    SESSION = web.AppKey("session", aiohttp.ClientSession)  # noqa: N806

    async def on_startup(app):
        app[SESSION] = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=BACKEND_KEEPALIVE_S),
            timeout=aiohttp.ClientTimeout(total=timeout_s, sock_read=timeout_s),
        )

    async def on_cleanup(app):
        await app[SESSION].close()

    async def post(request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return web.json_response({"error": "request body is not JSON"}, status=400)
        if not isinstance(body, dict):
            return web.json_response({"error": "request body is not an object"}, status=400)
        return await completions(request, body, request.app[SESSION])

    async def health(request: web.Request) -> web.Response:
        s = request.app[SESSION]
        try:
            for base in health_bases:
                async with s.get(f"{base}/health", timeout=aiohttp.ClientTimeout(total=5)) as r:
                    if r.status != 200:
                        return web.Response(status=503, text=f"{base}: {r.status}")
        except (TimeoutError, aiohttp.ClientError) as e:
            return web.Response(status=503, text=str(e))
        return web.Response(text="ok")

    async def models(request: web.Request) -> web.Response:
        try:
            async with request.app[SESSION].get(f"{models_base}/v1/models") as r:
                return json_response(await r.read(), r.status)
        except (TimeoutError, aiohttp.ClientError) as e:
            return web.json_response({"error": str(e)}, status=502)

    app = web.Application()
    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    app.router.add_post("/v1/completions", post)
    app.router.add_get("/health", health)
    app.router.add_get("/v1/models", models)
    return app
