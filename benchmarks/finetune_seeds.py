"""How much of a run's test accuracy is its seed: the same fine-tune repeated with other seeds.

    .venv/bin/python benchmarks/finetune_seeds.py [--run runs/quickstart] [--seeds 42 43 44] [--threads N]
        [--lm-loss W] [--shared-init [--soup]] [--distill ALPHA]

Takes a finished run (its data/ split, pretrain/ body and train: config, `lm_loss` included) and fine-tunes
the classifier once per seed, exactly as the train stage does with `seed: S` (head initialisation,
data order and dropout all follow the seed; the data split and the pretrained body stay fixed).
Scores each on val and test, then the ensemble that averages the first k models' probabilities.
The TF-IDF+LR baseline is the run's own (eval/metrics.json). Seed 42 on the quickstart
reproduces the train stage's figures exactly; each seed takes about 2 minutes on 2 cores.

--shared-init: every member starts from the first seed's head initialisation (only data order and
dropout follow the seed), as a weight average needs; --soup then also scores the uniform average
of the members' weights (a "model soup", Wortsman et al., 2022): one model's inference cost.

--distill ALPHA: then train one more model of the same size from the pretrained body (seed 42) on
the ensemble's averaged probabilities (ALPHA · KL at T=1 + (1 − ALPHA) · cross-entropy, the
compress stage's distillation loss and step loop; same epochs, lr and batch as the fine-tune): can
one model keep what the ensemble gained? About twice a fine-tune's time (the teachers run per batch).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default="runs/quickstart")
    ap.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: every core)")
    ap.add_argument("--shared-init", action="store_true", help="initialise every member's head with the first seed")
    ap.add_argument("--soup", action="store_true", help="also score the members' averaged weights (needs --shared-init)")
    ap.add_argument("--lm-loss", type=float, default=None, metavar="W",
                    help="fine-tune with this train.lm_loss instead of the run's (0 turns the auxiliary LM loss off)")
    ap.add_argument("--distill", type=float, default=None, metavar="ALPHA",
                    help="also distil the ensemble into one model with this weight on the soft targets")
    args = ap.parse_args()
    if args.soup and not args.shared_init:
        ap.error("--soup averages weights, which needs members from one initialisation: add --shared-init")

    from transformers import AutoTokenizer

    from trainforge.config import load_config
    from trainforge.data.io import read_jsonl
    from trainforge.models.presets import build_classifier
    from trainforge.train.loop import fit, predict_logits
    from trainforge.train.stage import auxiliary_objective, classification_data

    run = Path(args.run)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(run / "config.resolved.yaml").train
    if cfg is None or cfg.task != "classification" or cfg.method != "full" or cfg.model != "pretrain":
        sys.exit(f"{run}: this benchmark repeats a full fine-tune of the run's pretrain/ body (train.model: pretrain, method full)")
    if args.lm_loss is not None:
        cfg = cfg.model_copy(update={"lm_loss": args.lm_loss})
    tokenizer = AutoTokenizer.from_pretrained(run / "pretrain")
    rows = {s: read_jsonl(run / "data" / f"{s}.jsonl") for s in ("train", "val", "test")}
    train, val, labels = classification_data(tokenizer, cfg, rows["train"], rows["val"])
    _, test, _ = classification_data(tokenizer, cfg, rows["train"], rows["test"])
    pad = tokenizer.pad_token_id
    gold = {"val": torch.tensor(val.labels), "test": torch.tensor(test.labels)}
    acc = lambda probs, split: float((probs.argmax(-1) == gold[split]).float().mean())  # noqa: E731

    def probabilities(model) -> dict[str, torch.Tensor]:
        model.eval()
        return {s: predict_logits(model, enc, 64, pad).softmax(-1) for s, enc in (("val", val), ("test", test))}

    def fresh(seed: int):
        torch.manual_seed(seed)  # what the runner does before the train stage builds the model
        return build_classifier("pretrain", len(tokenizer), len(labels), cfg.max_length, cfg.dropout,
                                dict(enumerate(labels)), pad, run_dir=run, pooling=cfg.pooling)

    objective = auxiliary_objective(cfg, run / "pretrain")  # train.lm_loss, as the train stage applies it
    singles, probs, members = [], {"val": [], "test": []}, []
    for seed in args.seeds:
        model = fresh(args.seeds[0] if args.shared_init else seed)
        fit(model, train, val, cfg, pad, seed, stage=f"seed {seed}", loss_fn=objective(model))
        p = probabilities(model)
        for s in p:
            probs[s].append(p[s])
        singles.append({"seed": seed, "val": acc(p["val"], "val"), "test": acc(p["test"], "test")})
        print(json.dumps(singles[-1]), flush=True)
        if args.distill is not None or args.soup:
            members.append(model)

    soups = {}
    for k in range(2, len(members) + 1) if args.soup else ():
        soup = fresh(args.seeds[0])
        states = [m.state_dict() for m in members[:k]]
        soup.load_state_dict({n: sum(st[n] for st in states) / k if t.is_floating_point() else t
                              for n, t in states[0].items()})
        p = probabilities(soup)
        soups[k] = {"val": acc(p["val"], "val"), "test": acc(p["test"], "test")}

    student = None
    if args.distill is not None:
        from trainforge.compress.distill import distillation_loss
        from trainforge.compress.finetune import train_steps

        def loss_fn(model, batch):
            inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
            with torch.no_grad():  # the ensemble's log of averaged probabilities, as the teacher's logits
                teacher = torch.stack([m(**inputs).logits.softmax(-1) for m in members]).mean(0).log()
            return distillation_loss(model(**inputs).logits, teacher, batch["labels"], args.distill, 1.0)

        model = fresh(args.seeds[0])
        steps = int(round(cfg.epochs * math.ceil(len(train) / cfg.batch_size)))
        train_steps(model, train, steps, cfg.lr, cfg.batch_size, pad, args.seeds[0], loss_fn, "distil the ensemble")
        p = probabilities(model)
        student = {"val": acc(p["val"], "val"), "test": acc(p["test"], "test")}
        print(json.dumps({"distilled": student}), flush=True)

    metrics = run / "eval" / "metrics.json"  # absent when the run stopped after pretrain
    baseline = json.loads(metrics.read_text())["baseline"]["accuracy"] if metrics.is_file() else None
    n = len(test)
    print(f"\n{'seed':<10} {'val acc':>8} {'test acc':>9}")
    for r in singles:
        print(f"{r['seed']:<10} {r['val']:>8.4f} {r['test']:>9.4f}")
    for split in ("val", "test"):
        xs = [r[split] for r in singles]
        spread = f" ± {statistics.stdev(xs):.4f} (sd)" if len(xs) > 1 else ""
        print(f"{'mean ' + split:<10} {statistics.mean(xs):.4f}{spread}")
    for k in range(2, len(args.seeds) + 1):
        ens = {s: acc(sum(probs[s][:k]) / k, s) for s in ("val", "test")}
        print(f"{'ensemble ' + str(k):<10} {ens['val']:>8.4f} {ens['test']:>9.4f}   (probabilities of the first {k} averaged)")
    for k, r in soups.items():
        print(f"{'soup ' + str(k):<10} {r['val']:>8.4f} {r['test']:>9.4f}   (weights of the first {k} averaged: one model)")
    if student is not None:
        print(f"{'distilled':<10} {student['val']:>8.4f} {student['test']:>9.4f}   (one model, alpha {args.distill})")
    beside = f"TF-IDF+LR baseline on the same test split: {baseline:.4f}; " if baseline is not None else \
        f"no baseline: {metrics} is missing (run the eval stage); "
    print(f"\n{beside}n = {n}, one standard error ≈ {(0.85 * 0.15 / n) ** 0.5:.3f}")


if __name__ == "__main__":
    main()
