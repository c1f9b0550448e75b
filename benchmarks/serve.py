"""Serving: batched KV-cache generation vs sequential `generate()`, latency under concurrency,
and a bounded load with a rollback in the middle. Everything on loopback, in one process.

    1. throughput   the same 64 prompts × 32 new tokens, greedy:
                    (a) transformers `model.generate()` one prompt at a time (what a simple server does)
                    (b) our decode loop, batches of 32 (trainforge.serve.batching.generate_batch)
                    (c) our HTTP server, 32 concurrent clients (dynamic batching, SSE off)
    2. latency      p50 / p99 end-to-end at concurrency 1, 8, 32 (httpx async client → our server)
    3. load/faults  2,000 /v1/classify requests at concurrency 32 against models:/NAME with a
                    champion and a challenger canary; halfway, `deploy rollback` drops the challenger
                    (the server hot-swaps) — counts 5xx and failed requests (target: 0)

Run: .venv/bin/python benchmarks/serve.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.serve: the tiny models
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def percentile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def throughput(model_dir: Path, n_prompts: int, new_tokens: int, batch: int) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainforge.serve.batching import GenRequest, generate_batch
    from trainforge.serve.engine import load_engine

    prompts = [f"request {i}: the quick brown fox jumps over the lazy dog" for i in range(n_prompts)]
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    tok = AutoTokenizer.from_pretrained(model_dir)
    t0 = time.perf_counter()
    with torch.inference_mode():
        for p in prompts:
            ids = tok(p, return_tensors="pt")
            model.generate(**ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                           pad_token_id=tok.pad_token_id)
    sequential = n_prompts * new_tokens / (time.perf_counter() - t0)

    engine = load_engine(model_dir)
    engine.eos_ids = set()  # same work as min_new_tokens above: every request decodes all its tokens
    t0 = time.perf_counter()
    for i in range(0, n_prompts, batch):
        generate_batch(engine, [GenRequest(engine.encode(p), new_tokens, 0.0) for p in prompts[i : i + batch]])
    batched = n_prompts * new_tokens / (time.perf_counter() - t0)
    return {"sequential_generate_tok_s": sequential, "batched_decode_tok_s": batched}


async def _fire(url: str, payloads: list[dict], concurrency: int, path: str) -> tuple[list[float], list[int]]:
    import httpx

    latencies, statuses = [], []
    queue: asyncio.Queue = asyncio.Queue()
    for p in payloads:
        queue.put_nowait(p)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        async def worker():
            while not queue.empty():
                payload = queue.get_nowait()
                t0 = time.perf_counter()
                try:
                    r = await client.post(f"{url}{path}", json=payload)
                    statuses.append(r.status_code)
                except httpx.HTTPError:
                    statuses.append(-1)  # a lost request
                latencies.append(time.perf_counter() - t0)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, statuses


def http_generation(model_dir: Path, n_prompts: int, new_tokens: int, levels: list[int]) -> dict:
    from tests.serve.servers import start_server

    from trainforge.serve.config import BatchingConfig, DriftConfig, ServeConfig

    cfg = ServeConfig(drift=DriftConfig(enabled=False), batching=BatchingConfig(max_batch_size=32, max_wait_ms=5))
    server, state = start_server(str(model_dir), cfg)
    state.router.champion.engine.eos_ids = set()
    out = {}
    try:
        payloads = [{"prompt": f"request {i}: the quick brown fox jumps over the lazy dog", "max_tokens": new_tokens,
                     "temperature": 0} for i in range(n_prompts)]
        t0 = time.perf_counter()
        _, statuses = asyncio.run(_fire(server.url, payloads, 32, "/v1/completions"))
        out["http_c32_tok_s"] = n_prompts * new_tokens / (time.perf_counter() - t0)
        assert set(statuses) == {200}, statuses
        for c in levels:
            lat, statuses = asyncio.run(_fire(server.url, payloads[: max(16, 4 * c)], c, "/v1/completions"))
            out[f"c{c}"] = {"p50_ms": 1000 * statistics.median(lat), "p99_ms": 1000 * percentile(lat, 0.99),
                            "n": len(lat), "non_200": sum(s != 200 for s in statuses)}
    finally:
        server.stop()
    return out


def load_with_rollback(tmp: Path, n_requests: int, concurrency: int) -> dict:
    import mlflow
    from tests.serve.servers import start_server
    from tests.serve.tiny_models import RULE_TEXTS, build_tiny_classifier

    from trainforge.serve import registry
    from trainforge.serve.config import CanaryConfig, DriftConfig, GatesConfig, ServeConfig

    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    mlflow.MlflowClient(uri).create_experiment("trainforge", artifact_location=str(tmp / "artifacts"))
    registry.register_dir(uri, "bench", build_tiny_classifier(tmp / "good"), "champion", "benchmark champion")
    registry.register_dir(uri, "bench", build_tiny_classifier(tmp / "bad", flipped=True), "challenger", "benchmark challenger")
    gates = GatesConfig(min_requests=10**9, min_feedback=10**9)  # only the manual rollback acts here
    cfg = ServeConfig(drift=DriftConfig(window=500, min_samples=100), canary=CanaryConfig(share=0.5, poll_seconds=0.2, gates=gates))
    server, state = start_server("models:/bench", cfg, tracking_uri=uri, cache=tmp / "cache")
    try:
        payloads = [{"input": RULE_TEXTS[i % len(RULE_TEXTS)]} for i in range(n_requests)]

        async def run():
            async def rollback_halfway():
                while state.metrics.requests.labels("/v1/classify", "200")._value.get() < n_requests // 2:
                    await asyncio.sleep(0.01)
                await asyncio.to_thread(registry.rollback, uri, "bench", "benchmark: rollback mid-load", "bench", True)

            t0 = time.perf_counter()
            (lat, statuses), _ = await asyncio.gather(_fire(server.url, payloads, concurrency, "/v1/classify"), rollback_halfway())
            return lat, statuses, time.perf_counter() - t0

        lat, statuses, seconds = asyncio.run(run())
        swapped = state.router.challenger is None
    finally:
        server.stop()
    return {"requests": len(statuses), "5xx": sum(500 <= s < 600 for s in statuses), "lost": sum(s < 0 for s in statuses),
            "non_200": sum(s != 200 for s in statuses), "req_s": len(statuses) / seconds,
            "p50_ms": 1000 * statistics.median(lat), "p99_ms": 1000 * percentile(lat, 0.99), "challenger_swapped_out": swapped}


def main() -> int:
    import torch
    from tests.serve.tiny_models import build_tiny_llama

    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    n_prompts, new_tokens = (32, 16) if args.quick else (64, 32)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = build_tiny_llama(tmp / "llama", hidden=256, layers=4, heads=8)
        params = sum(p.numel() for p in __import__("transformers").AutoModelForCausalLM.from_pretrained(model_dir).parameters())
        print(f"model: Llama {params / 1e6:.1f}M params, {n_prompts} prompts × {new_tokens} new tokens, "
              f"torch threads {torch.get_num_threads()}")
        t = throughput(model_dir, n_prompts, new_tokens, batch=32)
        h = http_generation(model_dir, n_prompts, new_tokens, [1, 8, 32])
        print(f"\nthroughput (tokens/s)   sequential generate(): {t['sequential_generate_tok_s']:8.1f}")
        print(f"                        our batched decode:    {t['batched_decode_tok_s']:8.1f}   "
              f"ratio {t['batched_decode_tok_s'] / t['sequential_generate_tok_s']:.2f}x  (target ≥ 3x)")
        print(f"                        our HTTP server, c=32: {h['http_c32_tok_s']:8.1f}   "
              f"ratio {h['http_c32_tok_s'] / t['sequential_generate_tok_s']:.2f}x")
        print("\nlatency, /v1/completions with max_tokens="
              f"{new_tokens} (HTTP, loopback)")
        for c in (1, 8, 32):
            r = h[f"c{c}"]
            print(f"  concurrency {c:>2}: p50 {r['p50_ms']:7.1f} ms  p99 {r['p99_ms']:7.1f} ms  ({r['n']} requests, {r['non_200']} non-200)")
        n = 400 if args.quick else 2000
        load = load_with_rollback(tmp / "load", n, 32)
        print(f"\nload: {load['requests']} /v1/classify at concurrency 32, challenger rolled back halfway")
        print(f"  5xx {load['5xx']}  lost {load['lost']}  non-200 {load['non_200']}  ·  {load['req_s']:.0f} req/s  "
              f"p50 {load['p50_ms']:.1f} ms  p99 {load['p99_ms']:.1f} ms  ·  challenger swapped out: {load['challenger_swapped_out']}")
        ok = load["5xx"] == 0 and load["lost"] == 0 and load["challenger_swapped_out"]
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
