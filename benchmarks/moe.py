"""DeepSeek-style MoE side by side in one process (shared/DESIGN.md §6, issue 19).

    1. deepseek-tiny against a Llama at equal *active* parameters, on the same packed news tokens and steps
       (so equal training FLOPs, ≈ 6 × active params × tokens): validation loss, tokens/s, peak RSS growth
    2. load balance: the auxiliary-loss-free bias update (γ) against none, same seed: max/mean expert load
    3. the routed experts' forward + backward under transformers' experts backends (eager / batched_mm /
       grouped_mm): which is fastest here (transformers' default is grouped_mm)
    4. multi-token prediction (D=1, λ=0.3) on against off: validation next-token loss at equal steps

Runs one after another in this process; each one's peak RSS growth is read after resetting the kernel's
high-water mark (/proc/self/clear_refs). torch at --threads threads.
    .venv/bin/python benchmarks/moe.py            # ~3 minutes on 2 shared cores
    .venv/bin/python benchmarks/moe.py --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import time


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def corpus(n_docs: int, vocab: int, seq_len: int):
    from trainforge.models.tokenizer import train_bpe
    from trainforge.tasks import CausalLMTask
    from trainforge.train.config import PretrainConfig
    from trainforge.train.pretrain import corpus_texts

    texts = corpus_texts(PretrainConfig(corpus_limit=n_docs))
    tok = train_bpe(texts, vocab, 2, seq_len, family="llama")
    task = CausalLMTask(seq_len)
    n_val = max(1, len(texts) // 20)
    return tok, task.encode([{"text": t} for t in texts[n_val:]], tok), task.encode([{"text": t} for t in texts[:n_val]], tok)


def build(kind: str, tok, seq_len: int, llama_intermediate: int | None = None):
    from trainforge.models.presets import build_causal_lm
    from trainforge.models.tokenizer import special_ids

    extra = {"intermediate_size": llama_intermediate} if llama_intermediate else {}
    return build_causal_lm(kind, len(tok), seq_len, 0.0, special_ids(tok), **extra)


def matched_llama_intermediate(tok, seq_len: int, target_active: int) -> int:
    """The llama-tiny intermediate_size whose parameter count is closest to deepseek-tiny's active count."""
    from trainforge.models.moe import parameter_counts

    best = None
    for inter in range(128, 769, 16):
        n = parameter_counts(build("llama-tiny", tok, seq_len, inter))[0]
        if best is None or abs(n - target_active) < abs(best[1] - target_active):
            best = (inter, n)
    return best[0]


def _reset_peak_rss() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS (Linux)
    except OSError:
        pass


def one_run(spec: dict, data) -> dict:
    import torch

    from trainforge.models.moe import parameter_counts
    from trainforge.tasks import CausalLMTask
    from trainforge.train import mtp
    from trainforge.train.config import LoopConfig, MoeConfig
    from trainforge.train.loop import fit
    from trainforge.train.moe import attach

    torch.set_num_threads(spec["threads"])
    tok, train, val = data
    _reset_peak_rss()
    start_rss = _rss_kib("VmRSS:")
    torch.manual_seed(0)
    model = build(spec["model"], tok, spec["seq_len"], spec.get("llama_intermediate"))
    total, active = parameter_counts(model)
    task = CausalLMTask(spec["seq_len"])
    objective = None
    if spec.get("mtp"):
        mtp.attach(model, 1)
        objective = lambda trained: mtp.loss_fn(task.loss, 0.3)  # noqa: E731
    cfg = LoopConfig(max_steps=spec["steps"], batch_size=spec["batch"], lr=2e-3, weight_decay=0.1, log_every=10_000,
                     eval_every=spec["steps"], schedule={"warmup_ratio": 0.05})
    balancer, kw = attach(model, MoeConfig(bias_update_gamma=spec.get("gamma", 0.0)), task, base_factory=objective)
    if objective and "loss_fn_factory" not in kw:
        kw["loss_fn_factory"] = objective
    r = fit(model, train, val, cfg, tok.pad_token_id, seed=0, task=task, **kw)
    row = {"name": spec["name"], "params": total, "active": active, "val_loss": r.best.get("val_loss"),
           "tokens_per_s": round(r.tokens_per_second), "seconds": round(r.seconds, 1), "tokens": r.tokens,
           "peak_rss_growth_mb": round((_rss_kib("VmHWM:") - start_rss) / 1024)}
    if balancer is not None:
        summary = balancer.finish()
        hist = summary["history"]
        tail = hist[-10:]
        # the whole run's tokens per expert: a bias that rotates the experts balances this even where one step is skewed
        row["max_mean_whole_run"] = round(max(max(s) / (sum(s) / len(s)) for s in summary["load_share"]), 3)
        row["max_mean_last10"] = round(sum(max(h["max_mean"]) for h in tail) / len(tail), 3)
        row["max_mean_curve"] = [round(max(h["max_mean"]), 2) for h in hist[:: max(1, len(hist) // 10)]]
    return row


def experts_backends(threads: int, tokens: int, repeats: int) -> dict[str, float]:
    """ms per forward + backward of one DeepSeek MoE layer's routed experts (deepseek-tiny shape)."""
    import torch
    from transformers import DeepseekV3Config
    from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3Experts, DeepseekV3TopkRouter

    from trainforge.models.presets import PRESETS

    torch.set_num_threads(threads)
    cfg = DeepseekV3Config(**PRESETS["deepseek-tiny"].config, vocab_size=100)
    torch.manual_seed(0)
    router, x = DeepseekV3TopkRouter(cfg), torch.randn(tokens, cfg.hidden_size)
    torch.nn.init.normal_(router.weight, std=0.02)
    _, weights, index = router(x)
    out = {}
    for impl in ("eager", "batched_mm", "grouped_mm"):
        cfg._experts_implementation = impl
        torch.manual_seed(0)
        experts = DeepseekV3Experts(cfg)
        torch.nn.init.normal_(experts.gate_up_proj, std=0.02)
        torch.nn.init.normal_(experts.down_proj, std=0.02)
        experts.config = cfg
        xs = x.clone().requires_grad_(True)
        try:
            experts(xs, index, weights.detach()).sum().backward()  # warm-up
        except Exception as e:  # a backend this torch build lacks
            out[impl] = f"unavailable ({type(e).__name__})"
            continue
        t = time.perf_counter()
        for _ in range(repeats):
            experts(xs, index, weights.detach()).sum().backward()
        out[impl] = round((time.perf_counter() - t) / repeats * 1000, 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--docs", type=int, default=4000)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    steps = 8 if args.quick else args.steps
    seq_len = args.seq_len
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    from trainforge.models.moe import parameter_counts

    data = corpus(600 if args.quick else args.docs, 4000, seq_len)
    tok = data[0]
    active = parameter_counts(build("deepseek-tiny", tok, seq_len))[1]
    inter = matched_llama_intermediate(tok, seq_len, active)
    base = {"steps": steps, "seq_len": seq_len, "threads": args.threads, "batch": args.batch}
    specs = [
        {**base, "name": "deepseek-tiny, bias update γ=1e-3", "model": "deepseek-tiny", "gamma": 1e-3},
        {**base, "name": "deepseek-tiny, no balancing", "model": "deepseek-tiny", "gamma": 0.0},
        {**base, "name": f"llama-tiny, intermediate {inter} (equal active params)", "model": "llama-tiny",
         "llama_intermediate": inter},
        {**base, "name": "deepseek-tiny, γ=1e-3 + MTP D=1 λ=0.3", "model": "deepseek-tiny", "gamma": 1e-3, "mtp": True},
    ]
    rows = [one_run(s, data) for s in specs]
    backends = experts_backends(args.threads, args.batch * seq_len * 2, 3 if args.quick else 10)
    report = {"conditions": {"threads": args.threads, "steps": steps, "batch": args.batch, "seq_len": seq_len,
                             "train_tokens_per_run": rows[0]["tokens"], "cpu": os.uname().machine,
                             "note": "shared machine: absolute times are rough; compare within this run"},
              "runs": rows, "experts_backends_ms": backends}
    for r in rows:
        extra = f"  max/mean (last 10 steps) {r['max_mean_last10']:.3f}" if "max_mean_last10" in r else ""
        print(f"{r['name']:<52} params {r['params'] / 1e6:.2f}M active {r['active'] / 1e6:.2f}M  val loss "
              f"{r['val_loss']:.4f}  {r['tokens_per_s']:,} tok/s  +{r['peak_rss_growth_mb']} MB RSS{extra}")
    ds, nobal, llama, with_mtp = rows
    print(f"\nval loss deepseek / llama at equal active params and tokens: {ds['val_loss'] / llama['val_loss']:.3f}; "
          f"tokens/s ratio {ds['tokens_per_s'] / llama['tokens_per_s']:.2f}")
    print(f"max/mean load at the end: {ds['max_mean_last10']:.3f} with the bias update (target ≤ 1.3) vs "
          f"{nobal['max_mean_last10']:.3f} without; over the whole run's tokens {ds['max_mean_whole_run']:.3f} vs "
          f"{nobal['max_mean_whole_run']:.3f}")
    print(f"MTP: val next-token loss {with_mtp['val_loss']:.4f} with vs {ds['val_loss']:.4f} without")
    fastest = min((k for k, v in backends.items() if isinstance(v, float)), key=lambda k: backends[k])
    print(f"experts forward+backward (ms): {backends}; fastest {fastest}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
