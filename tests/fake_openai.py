"""A small real OpenAI-compatible HTTP server for the load-generator tests (aiohttp.web).

It runs in a background thread on 127.0.0.1 (a free port) and streams ``/v1/completions``
answers with known delays: the first token ``ttft_s`` after the request arrives, then one token
every ``tbt_s``. The prompt length chooses a fault (the prompts are token-id lists of exact
length): ``ERROR_LEN`` -> HTTP 500, ``DROP_LEN`` -> the connection is cut after 2 tokens,
``SHORT_LEN`` -> only half of ``max_tokens`` and a normal ``[DONE]``, ``SLOW_LEN`` -> the
first token comes after ``slow_s`` (for timeouts).
"""

from __future__ import annotations

import asyncio
import json
import threading

from aiohttp import web

ERROR_LEN, DROP_LEN, SHORT_LEN, SLOW_LEN = 7, 11, 13, 17


class FakeServer:
    def __init__(self, ttft_s=0.08, tbt_s=0.02, slow_s=5.0, model="fake-model"):
        self.ttft_s, self.tbt_s, self.slow_s, self.model = ttft_s, tbt_s, slow_s, model
        self.bodies: list[dict] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def models(self, request):
        return web.json_response({"object": "list", "data": [{"id": self.model}]})

    async def completions(self, request):
        body = await request.json()
        self.bodies.append(body)
        prompt = body["prompt"]
        n_prompt = len(prompt) if isinstance(prompt, list) else len(prompt.split())
        n = int(body["max_tokens"])
        if body.get("model") != self.model:
            return web.json_response({"error": {"message": "no such model"}}, status=404)
        if n_prompt == ERROR_LEN:
            return web.json_response({"error": {"message": "boom"}}, status=500)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        count = n // 2 if n_prompt == SHORT_LEN else n
        first = self.slow_s if n_prompt == SLOW_LEN else self.ttft_s
        for i in range(count):
            await asyncio.sleep(first if i == 0 else self.tbt_s)
            if n_prompt == DROP_LEN and i == 2:
                request.transport.close()
                return resp
            chunk = {
                "object": "text_completion",
                "choices": [
                    {
                        "index": 0,
                        "text": " x",
                        "finish_reason": "length" if i == count - 1 else None,
                    }
                ],
            }
            try:
                await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())
            except ConnectionError:  # the client went away (cancelled): nothing to do
                return resp
        usage = {"prompt_tokens": n_prompt, "completion_tokens": count}
        await resp.write(f"data: {json.dumps({'choices': [], 'usage': usage})}\n\n".encode())
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    def _main(self):
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_get("/v1/models", self.models)
        app.router.add_post("/v1/completions", self.completions)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    def __enter__(self) -> FakeServer:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc):
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
