"""Load generator: replay a trace against a real OpenAI-compatible server (issue 11).

:mod:`experiments.loadgen.client` sends the requests (aiohttp, open loop, streamed);
:mod:`experiments.loadgen.records` turns them into contract-4 records and a summary through the
simulator's metric code. The app is :mod:`experiments.apps.loadgen` (``splitbench-loadgen``).
"""
