"""What each ULMFiT step adds on the quickstart reviews, through the real pipeline (`trainforge run`).

    .venv/bin/python benchmarks/ulmfit_ablation.py [--config examples/quickstart.yaml] [--threads N] [--only VARIANT]

Every variant is the quickstart config with overrides, run to its eval stage (test split, TF-IDF+LR
baseline beside it) in runs/ablation-<variant>/:

    scratch        no pretraining: llama-tiny from random init, full fine-tuning
    in-domain      + LM fine-tuning on the training reviews only (pretrain.epochs=0)
    quickstart     + the news LM before it (ULMFiT steps 1-2), full fine-tuning: the config as is
    no-lm-loss     the quickstart's body fine-tuned without the auxiliary next-token loss (train.lm_loss=0)
    concat         the quickstart's pretrained body with ULMFiT's concat-pooling head ([last; mean; max])
    unfreeze       the quickstart's body with gradual unfreezing + discriminative lrs (ULMFiT step 3)

Every head but `concat` reads the last real token.

Variants that share a pretrained body reuse it: the run directory is copied and the runner's cache
skips the data and pretrain stages (their cache keys do not depend on train:). runs/ablation-quickstart
is the quickstart run itself (same config, same cache keys): copy it to runs/quickstart and
`trainforge run examples/quickstart.yaml` only adds compress and register. On 2 quiet cores the
whole table takes about 35 minutes. Seeded: the same commit prints the same accuracies.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "runs"

# name → (overrides, the variant whose run directory (pretrained body) it starts from)
VARIANTS: dict[str, tuple[list[str], str | None]] = {
    "scratch": (["pretrain=null", "train.model=llama-tiny"], None),
    "in-domain": (["pretrain.epochs=0"], None),
    "quickstart": ([], None),
    "no-lm-loss": (["train.lm_loss=0"], "quickstart"),
    "concat": (["train.pooling=concat"], "quickstart"),
    "unfreeze": (["train.method=unfreeze"], "quickstart"),
}


def run_variant(name: str, overrides: list[str], start_from: str | None, config: str, threads: int | None) -> dict:
    run = RUNS / f"ablation-{name}"
    if start_from is not None:
        shutil.rmtree(run, ignore_errors=True)
        shutil.copytree(RUNS / f"ablation-{start_from}", run, ignore=shutil.ignore_patterns("checkpoints", "eval", "compress"))
    threads = [] if threads is None else [f"train.threads={threads}"] + ([] if "pretrain=null" in overrides else [f"pretrain.threads={threads}"])
    only = [flag for stage in ("data", "pretrain", "train", "eval") for flag in ("--only", stage)]
    cmd = [sys.executable, "-m", "trainforge", "run", config, *overrides, f"name=ablation-{name}", *threads, *only]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT)
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    manifest = json.loads((run / "manifest.json").read_text())
    seconds = {s: manifest["stages"][s].get("seconds") for s in ("pretrain", "train") if s in manifest["stages"]}
    state = json.loads((run / "model" / "trainer_state.json").read_text())
    return {"variant": name, "val_accuracy": state["best"].get("val_accuracy"), "test_accuracy": metrics["model"]["accuracy"],
            "baseline_accuracy": metrics["baseline"]["accuracy"], "n_test": metrics["n"], "seconds": seconds,
            "wall_seconds": round(time.perf_counter() - t0, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="examples/quickstart.yaml")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: every core, as `make demo` runs)")
    ap.add_argument("--only", action="append", choices=list(VARIANTS), help="run just these variants (repeatable)")
    args = ap.parse_args()
    rows = []
    for name, (overrides, start_from) in VARIANTS.items():
        if args.only and name not in args.only:
            continue
        rows.append(run_variant(name, overrides, start_from, args.config, args.threads))
        print(json.dumps(rows[-1]), flush=True)
    print(f"\n{'variant':<12} {'val acc':>8} {'test acc':>9} {'TF-IDF+LR':>10} {'Δ test':>7}  seconds (pretrain / train)")
    for r in rows:
        s = r["seconds"]
        print(f"{r['variant']:<12} {r['val_accuracy']:>8.4f} {r['test_accuracy']:>9.4f} {r['baseline_accuracy']:>10.4f} "
              f"{r['test_accuracy'] - r['baseline_accuracy']:>+7.4f}  {s.get('pretrain', 0) or 0:.0f} / {s.get('train', 0) or 0:.0f}")
    print(f"\nn = {rows[0]['n_test']} test reviews: one standard error of an accuracy near 0.85 is about "
          f"{(0.85 * 0.15 / rows[0]['n_test']) ** 0.5:.3f}")


if __name__ == "__main__":
    main()
