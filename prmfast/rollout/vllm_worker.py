"""Generation worker for VLLMBackend, run as a script by any Python (e.g. a separate vLLM venv):

    /opt/vllm-env/bin/python vllm_worker.py --port PORT --model DIR [--engine vllm|hf]
                                            [--engine-args JSON]

It connects to 127.0.0.1:PORT (the trainer listens there) and answers newline-delimited JSON:
    {"cmd": "generate", "prompts": [[int]], "n", "max_new_tokens", "temperature", "top_p", "seed"}
        -> {"ok": true, "samples": [[{"response_ids", "logprobs", "finish_reason", "text"}]]}
    {"cmd": "load", "path": DIR}   -> {"ok": true}    (new weights, same architecture)
    {"cmd": "shutdown"}            -> {"ok": true}, then exits
    any failure                    -> {"ok": false, "error": "<traceback>"}
The first message it sends is {"ok": true, "ready": ENGINE} once the model is loaded.

Engines: "vllm" (vllm.LLM; needs only vllm in this interpreter, not prmfast) and "hf"
(prmfast's HFGenerateBackend; needs prmfast, for CPU use and for testing this protocol).
"""
from __future__ import annotations

import argparse
import json
import socket
import traceback


class VLLMEngine:
    """vllm.LLM on a local HF folder. Log-probs are vLLM's processed log-probs (after temperature
    and top-p), i.e. under the distribution sampled from, as RolloutBackend requires."""

    def __init__(self, model: str, engine_args: dict):
        import vllm
        self.vllm = vllm
        self.path = model
        self.engine_args = {"logprobs_mode": "processed_logprobs", **engine_args}
        self.llm = vllm.LLM(model=model, **self.engine_args)

    def generate(self, prompts, n, max_new_tokens, temperature, top_p, seed):
        params = self.vllm.SamplingParams(n=n, max_tokens=max_new_tokens, temperature=temperature,
                                          top_p=top_p, seed=seed, logprobs=0)
        outputs = self.llm.generate([{"prompt_token_ids": p} for p in prompts], params,
                                    use_tqdm=False)
        eos = set(self.llm.get_tokenizer().all_special_ids)
        return [[self._sample(c, eos) for c in out.outputs] for out in outputs]

    @staticmethod
    def _sample(completion, eos: set[int]) -> dict:
        ids = list(completion.token_ids)
        lps = [step[tok].logprob for tok, step in zip(ids, completion.logprobs)]
        finish = "stop" if completion.finish_reason == "stop" else "length"
        if finish == "stop" and ids and ids[-1] in eos:   # contract: responses exclude EOS
            ids, lps = ids[:-1], lps[:-1]
        return {"response_ids": ids, "logprobs": lps, "finish_reason": finish,
                "text": completion.text}

    def load(self, path: str) -> None:
        """Same folder as at start: reload its weights in place (vLLM's reload_weights re-reads
        the model path) and drop the prefix cache (it holds KV of the old weights). Another
        folder: rebuild the engine."""
        if path == self.path:
            self.llm.collective_rpc("reload_weights")
            self.llm.reset_prefix_cache()
            return
        import gc
        del self.llm
        gc.collect()
        self.path = path
        self.llm = self.vllm.LLM(model=path, **self.engine_args)


class HFEngine:
    """prmfast's HFGenerateBackend in this process (same sampling as in-process rollouts)."""

    def __init__(self, model: str, engine_args: dict):
        self.batch_size = int(engine_args.get("batch_size", 64))
        self.load(model)

    def generate(self, prompts, n, max_new_tokens, temperature, top_p, seed):
        out = self.backend.generate(prompts, n=n, max_new_tokens=max_new_tokens,
                                    temperature=temperature, top_p=top_p, seed=seed)
        return [[{"response_ids": s.response_ids, "logprobs": s.logprobs,
                  "finish_reason": s.finish_reason, "text": s.text} for s in row] for row in out]

    def load(self, path: str) -> None:
        from prmfast.models import load_policy
        from prmfast.rollout import HFGenerateBackend
        self.backend = HFGenerateBackend(*load_policy(path), batch_size=self.batch_size)


ENGINES = {"vllm": VLLMEngine, "hf": HFEngine}


def serve(conn: socket.socket, engine_name: str, model: str, engine_args: dict) -> None:
    reader, writer = conn.makefile("r", encoding="utf-8"), conn.makefile("w", encoding="utf-8")

    def send(obj: dict) -> None:
        writer.write(json.dumps(obj) + "\n")
        writer.flush()

    try:
        engine = ENGINES[engine_name](model, engine_args)
    except Exception:
        send({"ok": False, "error": traceback.format_exc()})
        return
    send({"ok": True, "ready": engine_name})
    for line in reader:
        request = json.loads(line)
        try:
            if request["cmd"] == "shutdown":
                send({"ok": True})
                return
            if request["cmd"] == "load":
                engine.load(request["path"])
                send({"ok": True})
            elif request["cmd"] == "generate":
                send({"ok": True, "samples": engine.generate(
                    request["prompts"], request["n"], request["max_new_tokens"],
                    request["temperature"], request["top_p"], request["seed"])})
            else:
                send({"ok": False, "error": f"unknown cmd {request['cmd']!r}"})
        except Exception:
            send({"ok": False, "error": traceback.format_exc()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--engine", choices=sorted(ENGINES), default="vllm")
    parser.add_argument("--engine-args", default="{}", help="JSON kwargs for the engine")
    args = parser.parse_args()
    with socket.create_connection(("127.0.0.1", args.port)) as conn:
        serve(conn, args.engine, args.model, json.loads(args.engine_args))


if __name__ == "__main__":
    main()
