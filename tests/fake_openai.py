"""A small real OpenAI-compatible HTTP server for the load-generator tests (aiohttp.web), with
fault injection.

It runs in a background thread on 127.0.0.1 (a free port) and streams ``/v1/completions``
answers with known delays: the first token ``ttft_s`` after the request arrives, then one token
every ``tbt_s``. The prompt length chooses a fault (the prompts are token-id lists of exact
length):

- ``ERROR_LEN`` -> HTTP 500; ``DROP_LEN`` -> the connection is cut after 2 tokens;
  ``SHORT_LEN`` -> only half of ``max_tokens`` and a normal ``[DONE]``; ``SLOW_LEN`` -> the
  first token comes after ``slow_s`` (for timeouts); ``STALL_LEN`` -> 2 tokens, then nothing
  for ``slow_s`` (a stall mid-stream); ``HANG_LEN`` -> the request is held ``hang_s`` before
  any answer (for Ctrl-C tests);
- a length in ``BAD_CHUNKS`` -> one token, then that ``data:`` payload (valid JSON of the
  wrong shape, or not JSON), then the rest of a normal answer.

``models`` replaces the ``/v1/models`` answer: ``(status, content type, body text)``;
``models_delay_s`` holds it that long. ``seen`` is set once any request arrived, ``bodies``
lists the completion request bodies.
"""

from __future__ import annotations

import asyncio
import json
import threading

from aiohttp import web

ERROR_LEN, DROP_LEN, SHORT_LEN, SLOW_LEN, STALL_LEN, HANG_LEN = 7, 11, 13, 17, 19, 29

#: prompt length -> a malformed ``data:`` payload sent after the first token
BAD_CHUNKS = {
    41: "[1, 2]",
    42: "42",
    43: '"text"',
    44: "null",
    45: '{"choices": [], "usage": [1, 2]}',
    46: '{"choices": [], "usage": {"prompt_tokens": null, "completion_tokens": 3}}',
    47: '{"choices": ["x"]}',
    48: '{"choices": {"0": {"text": "x"}}}',
    49: '{"choices": [{"text": "x", "token_ids": "12"}]}',
    50: '{"choices": [], "usage": {"prompt_tokens": "9", "completion_tokens": 1}}',
    51: '{"choices": [], "usage": {"prompt_tokens": true}}',
    52: '{"choices": [{"text": "x"}], "usage": 7}',
    53: "{not json",
}


class FakeServer:
    def __init__(
        self,
        ttft_s=0.08,
        tbt_s=0.02,
        slow_s=5.0,
        model="fake-model",
        hang_s=60.0,
        models=None,
        models_delay_s=0.0,
    ):
        self.ttft_s, self.tbt_s, self.slow_s, self.model = ttft_s, tbt_s, slow_s, model
        self.hang_s, self.models_answer, self.models_delay_s = hang_s, models, models_delay_s
        self.bodies: list[dict] = []
        self.seen = threading.Event()
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def models(self, request):
        self.seen.set()
        if self.models_delay_s:
            await asyncio.sleep(self.models_delay_s)
        if self.models_answer is not None:
            status, ctype, text = self.models_answer
            return web.Response(status=status, text=text, content_type=ctype)
        return web.json_response({"object": "list", "data": [{"id": self.model}]})

    async def completions(self, request):
        self.seen.set()
        body = await request.json()
        self.bodies.append(body)
        prompt = body["prompt"]
        n_prompt = len(prompt) if isinstance(prompt, list) else len(prompt.split())
        n = int(body["max_tokens"])
        if body.get("model") != self.model:
            return web.json_response({"error": {"message": "no such model"}}, status=404)
        if n_prompt == ERROR_LEN:
            return web.json_response({"error": {"message": "boom"}}, status=500)
        if n_prompt == HANG_LEN:
            await asyncio.sleep(self.hang_s)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        count = n // 2 if n_prompt == SHORT_LEN else n
        first = self.slow_s if n_prompt == SLOW_LEN else self.ttft_s
        try:
            for i in range(count):
                await asyncio.sleep(first if i == 0 else self.tbt_s)
                if n_prompt == DROP_LEN and i == 2:
                    request.transport.close()
                    return resp
                if n_prompt == STALL_LEN and i == 2:
                    await asyncio.sleep(self.slow_s)
                if n_prompt in BAD_CHUNKS and i == 1:
                    await resp.write(f"data: {BAD_CHUNKS[n_prompt]}\n\n".encode())
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
                await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())
            usage = {"prompt_tokens": n_prompt, "completion_tokens": count}
            await resp.write(f"data: {json.dumps({'choices': [], 'usage': usage})}\n\n".encode())
            await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
        except ConnectionError:  # the client went away (cancelled): nothing to do
            pass
        return resp

    def _main(self):
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_get("/v1/models", self.models)
        app.router.add_post("/v1/completions", self.completions)
        # a handler stops when its client goes away (a cancelled request); shutdown is quick
        self._runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            handler_cancellation=True,
            shutdown_timeout=1.0,
        )
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
