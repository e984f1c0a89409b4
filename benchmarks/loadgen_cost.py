"""What the load generator costs: CPU seconds per request and per streamed token.

    .venv/bin/python benchmarks/loadgen_cost.py [--requests 300] [--tokens 64] [--rate 30]

Runs the fake OpenAI server of the test suite (tests/fake_openai.py: 5 ms per token) in a
child process, replays an open-loop schedule of ``--requests`` requests at ``--rate`` req/s
with ``--tokens`` output tokens each, and prints the client's own user+system CPU (its
process only) per request and per token, with the lag it saw. Bounded: at most 2000 requests.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVER = """
import sys, time
sys.path.insert(0, {tests!r})
from fake_openai import FakeServer
with FakeServer(ttft_s=0.02, tbt_s=0.005) as s:
    print(s.port, flush=True)
    sys.stdin.read()
"""


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--rate", type=float, default=30.0)
    a = ap.parse_args()
    n = min(a.requests, 2000)
    sys.path.insert(0, str(ROOT))
    from experiments.loadgen import client, records

    srv = subprocess.Popen(
        [sys.executable, "-c", SERVER.format(tests=str(ROOT / "tests"))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        port = int(srv.stdout.readline())
        plan = [client.Record(i, i / a.rate, 32, a.tokens) for i in range(n)]
        opts = client.ClientOptions(base_url=f"http://127.0.0.1:{port}", request_timeout_s=60)
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        st = asyncio.run(client.replay(plan, opts))
        wall = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        srv.stdin.close()
        srv.wait(10)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    req = records.request_table(st.records)
    blk = records.client_block(req, st, cpu, wall)
    print(
        f"{n} requests x {a.tokens} tokens at {a.rate:g} req/s: {blk['status']['ok']} ok; "
        f"client CPU {cpu:.2f} s in {wall:.1f} s wall = {blk['cpu_ms_per_request']:.2f} ms/request, "
        f"{blk['cpu_us_per_token']:.1f} us/token; lag p99 {blk['lag_s']['p99'] * 1e3:.1f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
