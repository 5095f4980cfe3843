"""VLLMBackend: rollouts from vLLM running in its own process (and usually its own venv).

vLLM pins its own torch and transformers, so the trainer never imports it. It starts
`vllm_worker.py` with a Python that has vLLM installed and talks to it over a localhost socket
(newline-delimited JSON; protocol in vllm_worker.py):

    backend = VLLMBackend("runs/x/vllm_weights", python="/opt/vllm-env/bin/python",
                          engine_args={"gpu_memory_utilization": 0.3, "dtype": "bfloat16"})
    backend.sync_weights(policy, tokenizer)     # after every PPO update
    samples = backend.generate(prompt_ids, n=4, max_new_tokens=512, temperature=1.0)
    backend.close()

Weight sync: save_policy into the backend's folder, then the worker reloads that folder in
place (vLLM's reload_weights) and drops its prefix cache. Simple and correct; it costs a disk
round trip per update (seconds for a 1.5B model on local NVMe). Faster options, not built here:
an NCCL broadcast from trainer rank 0 into the vLLM workers (vLLM's RLHF examples), or CUDA IPC
handles when trainer and vLLM share the GPUs.
"""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

from prmfast.rollout.base import Sample

WORKER = Path(__file__).with_name("vllm_worker.py")


class WorkerError(RuntimeError):
    """The worker failed to start or to answer a request; the message holds its traceback."""


class VLLMBackend:
    """RolloutBackend over a worker process.

    model_dir: HF folder the worker serves (also where sync_weights writes).
    python: the interpreter that has the engine (default: this one).
    engine: "vllm" (GPU) or "hf" (prmfast's HFGenerateBackend; CPU and tests).
    engine_args: JSON-able kwargs, e.g. vllm.LLM's gpu_memory_utilization, dtype,
    tensor_parallel_size, enable_prefix_caching; for "hf": batch_size.
    """

    def __init__(self, model_dir: str | Path, *, python: str = sys.executable,
                 engine: str = "vllm", engine_args: dict | None = None,
                 startup_timeout_s: float = 900.0, env: dict | None = None):
        self.model_dir = str(Path(model_dir).resolve())
        with socket.create_server(("127.0.0.1", 0)) as server:
            self.proc = subprocess.Popen(
                [python, str(WORKER), "--port", str(server.getsockname()[1]), "--model",
                 self.model_dir, "--engine", engine,
                 "--engine-args", json.dumps(engine_args or {})],
                env=env)
            self.conn = self._accept(server, startup_timeout_s, python)
        self._reader = self.conn.makefile("r", encoding="utf-8")
        self._writer = self.conn.makefile("w", encoding="utf-8")
        self._receive()                                   # {"ready": engine} or the load error

    def _accept(self, server: socket.socket, timeout_s: float, python: str) -> socket.socket:
        """Wait for the worker to connect; fail fast if it exits first."""
        server.settimeout(1.0)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                conn, _ = server.accept()
            except socket.timeout:
                if self.proc.poll() is not None:
                    raise WorkerError(f"worker ({python} {WORKER.name}) exited with code "
                                      f"{self.proc.returncode} before connecting") from None
                continue
            conn.settimeout(None)
            return conn
        self.proc.kill()
        raise WorkerError(f"worker ({python} {WORKER.name}) did not connect within {timeout_s} s")

    def generate(self, prompt_ids: list[list[int]], *, n: int, max_new_tokens: int,
                 temperature: float, top_p: float = 1.0, seed: int | None = None,
                 progress: bool = False) -> list[list[Sample]]:
        """As RolloutBackend.generate; progress is ignored (one request, answered at once)."""
        reply = self._request({"cmd": "generate", "prompts": prompt_ids, "n": n,
                               "max_new_tokens": max_new_tokens, "temperature": temperature,
                               "top_p": top_p, "seed": seed})
        return [[Sample(prompt_ids=list(prompt), **s) for s in row]
                for prompt, row in zip(prompt_ids, reply["samples"])]

    def sync_weights(self, model, tokenizer) -> None:
        """Write the trainer's policy into model_dir and make the worker serve it.

        Call on the rank that owns the worker, with the unwrapped module (gathered under
        ZeRO-3 / FSDP)."""
        from prmfast.models import save_policy
        save_policy(model, tokenizer, self.model_dir)
        self._request({"cmd": "load", "path": self.model_dir})

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self._request({"cmd": "shutdown"})
            except (WorkerError, OSError):
                pass
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.conn.close()

    def __enter__(self) -> "VLLMBackend":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _request(self, message: dict) -> dict:
        self._writer.write(json.dumps(message) + "\n")
        self._writer.flush()
        return self._receive()

    def _receive(self) -> dict:
        line = self._reader.readline()
        if not line:
            raise WorkerError(f"worker exited (code {self.proc.poll()}) without answering")
        reply = json.loads(line)
        if not reply["ok"]:
            raise WorkerError(f"worker error:\n{reply['error']}")
        return reply
