"""Compression on the quickstart classifier: every variant beside the original, in one process.

    .venv/bin/python benchmarks/compress.py [--run runs/quickstart] [--recovery-steps 300] [--distill-epochs 1]

Runs `trainforge compress` on a copy of the run (the run itself is not touched) with INT8 (dynamic
and weight-only), structured pruning at 30% with a recovery fine-tune, and distillation into a
half-depth student; then times the alternative a user would reach for to get INT8 on CPU —
onnxruntime's own dynamic quantisation of the exported graph — round-robin with the PyTorch
original on the same batches. Prints the issue's targets with met / NOT MET beside each.
Gates are switched off here (every variant is reported); the stage applies them in a real run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


class OrtClassifier(torch.nn.Module):
    """An onnxruntime session behind the (input_ids, attention_mask) → .logits call PyTorch models take."""

    def __init__(self, path: Path, threads: int, config):
        super().__init__()
        import onnxruntime as ort

        self.config = config  # num_labels, read by the scorer
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def forward(self, input_ids, attention_mask):
        out = self.session.run(["logits"], {"input_ids": input_ids.numpy(), "attention_mask": attention_mask.numpy()})[0]
        return type("Out", (), {"logits": torch.from_numpy(out)})()


def onnxruntime_side_by_side(run: Path, threads: int, n_batches: int, seed: int) -> list[dict]:
    """onnxruntime fp32 and its dynamic INT8, timed round-robin with the PyTorch original and our INT8."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from trainforge.compress.load import load_variant
    from trainforge.compress.measure import latency_batches, latency_table, score
    from trainforge.compress.onnx_export import export_onnx
    from trainforge.compress.stage import encode_split
    from trainforge.data.io import read_jsonl

    tok = AutoTokenizer.from_pretrained(run / "model")
    original = AutoModelForSequenceClassification.from_pretrained(run / "model").eval()
    label2id = {k: int(v) for k, v in original.config.label2id.items()}
    test = encode_split(read_jsonl(run / "data" / "test.jsonl"), tok, label2id, "data/test.jsonl")
    b1, b32 = latency_batches(test, n_batches, tok.pad_token_id or 0, seed)
    out = run / "compress" / "bench_onnx"
    fp32 = export_onnx(original, b32[0], out / "model.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_dynamic(str(fp32), str(out / "model.int8.onnx"), weight_type=QuantType.QInt8, per_channel=True)
    models = {"original": original, "int8_dynamic": load_variant(run / "compress" / "int8_dynamic"),
              "ort_fp32": OrtClassifier(fp32, threads, original.config),
              "ort_int8": OrtClassifier(out / "model.int8.onnx", threads, original.config)}
    timing = latency_table(models, b1, b32, threads)
    rows = []
    for name, m in models.items():
        metrics, _ = score(m, test, tok.pad_token_id or 0) if name.startswith("ort") else (None, None)
        rows.append({"name": name, **timing[name], "accuracy": metrics["accuracy"] if metrics else None,
                     "speedup_b32": timing["original"]["p50_b32_ms"] / timing[name]["p50_b32_ms"]})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="runs/quickstart", help="a finished run with model/ and data/")
    ap.add_argument("--recovery-steps", type=int, default=300)
    ap.add_argument("--distill-epochs", type=float, default=1.0)
    ap.add_argument("--latency-batches", type=int, default=12)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    src = Path(args.run)
    if not (src / "model" / "config.json").is_file():
        print(f"{src}: no model/ — run `make demo` (or pass --run DIR)", file=sys.stderr)
        return 2

    from trainforge.cli import main as trainforge

    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / src.name
        shutil.copytree(src, run, ignore=shutil.ignore_patterns("compress", "checkpoints", "mlruns"))
        rc = trainforge([
            "compress", str(run), "--int8", "--weight-only-int8", "--prune", "0.3", "--distill",
            "--set", "tracking.enabled=false", "--set", "compress.onnx=false",
            "--set", f"compress.threads={args.threads}", "--set", f"compress.latency_batches={args.latency_batches}",
            "--set", f"compress.structured.recovery_steps={args.recovery_steps}",
            "--set", f"compress.distill.epochs={args.distill_epochs}",
            "--set", "compress.gates.min_speedup_b32=null", "--set", "compress.gates.max_metric_drop=1.0",
        ])
        if rc != 0:
            return rc
        measured = json.loads((run / "compress" / "measurements.json").read_text())
        seed = 42
        ort_rows = onnxruntime_side_by_side(run, args.threads, args.latency_batches, seed)

    v = {m["name"]: m for m in measured["variants"]}
    orig = v["original"]
    print(f"\nmodel: {src}/model  ({orig['params']:,} params, {orig['size_mb']:.2f} MB, linear weights {orig['linear_mb']:.2f} MB)")
    print(f"torch {measured['torch']}, engine {measured['quantized_engine']}, {measured['threads']} thread(s); "
          f"ms are per forward pass, x = speedup over the original at that batch size")
    header = f"{'variant':<18}{'accuracy':>9}{'Δacc':>8}{'p50 b1':>8}{'p95 b1':>8}{'p50 b32':>9}{'p95 b32':>9}{'x b1':>7}{'x b32':>7}{'ex/s':>7}{'MB':>7}{'lin MB':>8}"
    print(header)
    for m in measured["variants"]:
        acc = m["metrics"]["accuracy"]
        print(f"{m['name']:<18}{acc:>9.4f}{acc - orig['metrics']['accuracy']:>+8.4f}{m['p50_b1_ms']:>8.1f}{m['p95_b1_ms']:>8.1f}"
              f"{m['p50_b32_ms']:>9.1f}{m['p95_b32_ms']:>9.1f}{m['speedup_b1']:>7.2f}{m['speedup_b32']:>7.2f}"
              f"{m['throughput_b32']:>7.0f}{m['size_mb']:>7.2f}{m['linear_mb']:>8.2f}")
    print("\nalternative: onnxruntime (same batches, round-robin with the PyTorch original)")
    for r in ort_rows:
        acc = f"{r['accuracy']:.4f}" if r["accuracy"] is not None else "   —  "
        print(f"{r['name']:<18}{acc:>9}{r['p50_b1_ms']:>8.1f}{r['p95_b1_ms']:>8.1f}{r['p50_b32_ms']:>9.1f}{r['p95_b32_ms']:>9.1f}"
              f"{'':>7}{r['speedup_b32']:>7.2f}")

    teacher_layers = json.loads((src / "model" / "config.json").read_text()).get("num_hidden_layers")
    i8, sp, st = v["int8_dynamic"], v["structured_pruned"], v["distilled"]
    base_acc = orig["metrics"]["accuracy"]
    checks = [
        ("INT8 ≥ 1.5x faster at batch 32", f"{i8['speedup_b32']:.2f}x", i8["speedup_b32"] >= 1.5),
        ("INT8 accuracy loss ≤ 1 point", f"{(base_acc - i8['metrics']['accuracy']) * 100:+.2f} pt", base_acc - i8["metrics"]["accuracy"] <= 0.01),
        ("INT8 linear weights ≥ 60% smaller", f"{(1 - i8['linear_mb'] / orig['linear_mb']) * 100:.1f}% smaller",
         i8["linear_mb"] <= 0.4 * orig["linear_mb"]),
        ("structured 30% + recovery within 2 points", f"{(sp['metrics']['accuracy'] - base_acc) * 100:+.2f} pt, "
         f"{sp['params_before']:,}→{sp['params_after']:,} params, {sp['speedup_b32']:.2f}x", base_acc - sp["metrics"]["accuracy"] <= 0.02),
        ("distilled student (report)", f"{st['student_layers']} of {teacher_layers} layers, "
         f"accuracy {st['metrics']['accuracy']:.4f} ({(st['metrics']['accuracy'] - base_acc) * 100:+.2f} pt), {st['speedup_b32']:.2f}x at b32", None),
    ]
    print("\ntargets (issue 6)")
    for what, figure, ok in checks:
        mark = "" if ok is None else ("met" if ok else "NOT MET")
        print(f"  {what:<44}{figure:<58}{mark}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
