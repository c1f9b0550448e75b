"""GRPO: rollout throughput of our batched KV-cache engine against transformers' generate(), the share of a GRPO
step spent generating, and (from a finished `examples/grpo.yaml` run) GRPO against SFT alone.

    1. rollouts    P prompts × G samples, N new tokens each (temperature 1, every row decodes all N tokens):
                   (a) `model.generate()` one completion at a time (sequential)
                   (b) `model.generate()` on the whole left-padded P×G batch (what TRL does without vLLM)
                   (c) our engine: posttrain/rollouts.generate → serve/batching.generate_batch
    2. step time   a few GRPO rounds (posttrain/grpo_loop.grpo_fit) on the same model: the share spent generating,
                   and what it would be with sequential generate() (generation time × the measured ratio)
    3. --run-dir   runs/grpo (after `trainforge run examples/grpo.yaml`): exact match and pass@4 on the held-out
                   prompts for GRPO, the SFT model it started from and the majority-answer baseline, with the
                   seconds and samples each phase took

Run: .venv/bin/python benchmarks/grpo.py [--quick] [--run-dir runs/grpo]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.serve: the tiny models
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

PROMPTS = ["What is 7 plus 5? Think, then give the answer.", "每袋有3个苹果，4袋一共有多少个苹果？请先思考，再给出答案。",
           "Tom has 12 pens and gets 9 more. How many pens does Tom have now?", "9乘以8等于多少？",
           "There are 4 eggs in a box and 20 in another. How many eggs are there in total?", "What is 6 times 7?",
           "小明有21本书，又得到3本。小明现在有多少本书？", "Each bag holds 8 books. How many books are in 2 bags?"]


def rollout_throughput(model, tok, P: int, G: int, new_tokens: int) -> dict:
    import torch

    from trainforge.posttrain.rollouts import generate

    ids = [tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, tokenize=True,
                                   return_dict=False) for p in PROMPTS[:P]]
    rows = [i for i in ids for _ in range(G)]
    n_tokens = len(rows) * new_tokens
    torch.manual_seed(0)
    t0 = time.perf_counter()
    with torch.inference_mode():
        for r in rows:
            x = torch.tensor([r])
            model.generate(input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=new_tokens,
                           min_new_tokens=new_tokens, do_sample=True, temperature=1.0, top_k=0, pad_token_id=tok.pad_token_id)
    sequential = n_tokens / (time.perf_counter() - t0)

    width = max(map(len, rows))
    x = torch.tensor([[tok.pad_token_id] * (width - len(r)) + r for r in rows])
    mask = (x != tok.pad_token_id).long()
    t0 = time.perf_counter()
    with torch.inference_mode():
        model.generate(input_ids=x, attention_mask=mask, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                       do_sample=True, temperature=1.0, top_k=0, pad_token_id=tok.pad_token_id)
    hf_batched = n_tokens / (time.perf_counter() - t0)

    t0 = time.perf_counter()
    generate(model, tok, rows, new_tokens, 1.0, 1.0, list(range(len(rows))), batch_size=len(rows), ignore_eos=True)
    ours = n_tokens / (time.perf_counter() - t0)
    return {"sequential_generate_tok_s": sequential, "batched_generate_tok_s": hf_batched, "engine_tok_s": ours}


def step_share(model, tok, P: int, G: int, new_tokens: int, rounds: int) -> dict:
    from trainforge.posttrain.grpo_config import GrpoConfig
    from trainforge.posttrain.grpo_loop import encode_prompts, grpo_fit
    from trainforge.posttrain.rewards import Reward, exact_answer, think_format
    from trainforge.train.config import LoopConfig

    rows = [{"prompt": p, "reference": "0"} for p in PROMPTS]
    prompts = encode_prompts(rows, tok, "prompt", 96)
    res = grpo_fit(model, tok, prompts, LoopConfig(max_steps=rounds, lr=1e-4, log_every=1000),
                   GrpoConfig(group_size=G, prompts_per_step=P, max_new_tokens=new_tokens, generation_batch=P * G),
                   seed=0, rewards=[Reward("exact_answer", exact_answer), Reward("think_format", think_format)])
    gen = sum(h["generation_seconds"] for h in res.history)
    total = sum(h["step_seconds"] for h in res.history)
    mean_len = sum(h["completions/mean_length"] for h in res.history) / len(res.history)
    return {"generation_seconds": gen, "step_seconds": total, "share": gen / total, "mean_length": mean_len}


def run_dir_report(run_dir: Path) -> None:
    metrics = json.loads((run_dir / "eval" / "metrics.json").read_text())
    state = json.loads((run_dir / "model" / "trainer_state.json").read_text())
    m, s, b = metrics["model"], metrics.get("sft", {}), metrics["baseline"]
    k = next(key for key in m if key.startswith("pass_at_"))
    print(f"\n3. {run_dir} (held-out {metrics['split']} prompts: {metrics['n']})")
    print(f"   {'':28} {'exact match':>12} {k.replace('_at_', '@'):>8} {'format':>8} {'tokens':>8}")
    for name, row in (("GRPO (after SFT)", m), ("SFT alone", s), (f"baseline {b['name']}", b)):
        if row:
            print(f"   {name:28} {row['exact_match']:12.3f} {row[k]:8.3f} {row['format_rate']:8.2f} "
                  f"{row.get('mean_completion_tokens', float('nan')):8.1f}")
    print(f"   compute: SFT {state['sft_steps']} steps in {state['sft_seconds']:.0f} s; GRPO {state['steps']} rounds "
          f"({state['completions']} completions) in {state['grpo_seconds']:.0f} s, {state['generation_share']:.0%} generating")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--run-dir", type=Path, default=None)
    args = ap.parse_args()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tests.serve.tiny_models import build_tiny_llama

    torch.set_num_threads(1)
    P, G, N = (4, 4, 16) if args.quick else (8, 8, 32)
    with tempfile.TemporaryDirectory() as d:
        path = build_tiny_llama(Path(d) / "llama", hidden=192, layers=4, heads=4)  # llama-tiny's shape
        model = AutoModelForCausalLM.from_pretrained(path).eval()
        tok = AutoTokenizer.from_pretrained(path)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: Llama 4 layers × 192, {n_params / 1e6:.2f}M parameters; torch threads 1; P={P} prompts × G={G}, {N} new tokens")
    t = rollout_throughput(model, tok, P, G, N)
    print("1. rollouts (tokens/s)")
    print(f"   sequential generate()        {t['sequential_generate_tok_s']:9,.0f}")
    print(f"   batched generate() (P×G)     {t['batched_generate_tok_s']:9,.0f}")
    print(f"   our engine (P×G, KV cache)   {t['engine_tok_s']:9,.0f}   {t['engine_tok_s'] / t['sequential_generate_tok_s']:.1f}× "
          f"sequential, {t['engine_tok_s'] / t['batched_generate_tok_s']:.2f}× batched generate()")
    s = step_share(model, tok, P, G, N, 1 if args.quick else 2)
    ratio = t["engine_tok_s"] / t["sequential_generate_tok_s"]
    seq_gen = s["generation_seconds"] * ratio
    seq_share = seq_gen / (seq_gen + s["step_seconds"] - s["generation_seconds"])
    print(f"2. GRPO step time: {s['share']:.0%} generating with our engine ({s['generation_seconds']:.1f} of "
          f"{s['step_seconds']:.1f} s, completions {s['mean_length']:.1f} tokens); with sequential generate() it "
          f"would be ≈{seq_share:.0%} (generation × {ratio:.1f})")
    if args.run_dir:
        run_dir_report(args.run_dir)


if __name__ == "__main__":
    main()
