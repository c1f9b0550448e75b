"""Vision figures: INT8 beside fp32 on the image classifier at batch 1 and 32 (round-robin, one process), and the
evaluated runs' figures beside their baselines (examples/vision.yaml beside pixel-LR; examples/clip.yaml beside
random ranking).

    .venv/bin/python benchmarks/vision.py                       # a fresh vit-tiny (untrained) for the INT8 timing
    .venv/bin/python benchmarks/vision.py --run runs/vision --clip-run runs/clip   # the trained runs

INT8 here is torch's dynamic quantisation of every nn.Linear (compress/quantize.py, fbgemm and onednn both
timed); the conv nets are not timed because dynamic INT8 leaves their convolutions in fp32 (compress refuses).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def int8_speedups(model, pixels, threads: int, batches: int) -> dict:
    from trainforge.compress.measure import round_robin_latency
    from trainforge.compress.quantize import available_kernels, to_dynamic_int8, to_weight_only_int8
    from trainforge.threads import torch_threads

    stored = to_weight_only_int8(model)
    models = {"fp32": model.eval()} | {f"int8_{k}": to_dynamic_int8(stored, k).eval() for k in available_kernels()}
    b1 = [{"pixel_values": pixels[i:i + 1]} for i in range(4 * batches)]
    b32 = [{"pixel_values": pixels[(i * 32) % (len(pixels) - 31):][:32]} for i in range(batches)]
    out = {}
    with torch_threads(threads):
        for name, bs in (("b1", b1), ("b32", b32)):
            times = round_robin_latency(models, bs, repeats=3)
            ms = {m: statistics.median(t) * 1000 for m, t in times.items()}
            out[name] = {m: {"p50_ms": round(v, 3), "speedup": round(ms["fp32"] / v, 3)} for m, v in ms.items()}
    return out


def main() -> None:
    import torch

    parser = argparse.ArgumentParser()
    parser.add_argument("--run", type=Path, help="an evaluated examples/vision.yaml run (default: an untrained vit-tiny)")
    parser.add_argument("--clip-run", type=Path)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batches", type=int, default=8)
    args = parser.parse_args()

    from trainforge.vision.digits import digit_images
    from trainforge.vision.processor import classification_processor, load_processor, pixel_values

    report: dict = {"threads": args.threads, "torch": torch.__version__}
    if args.run:
        from transformers import AutoModelForImageClassification

        model = AutoModelForImageClassification.from_pretrained(args.run / "model")
        processor = load_processor(args.run / "model")
        m = json.loads((args.run / "eval" / "metrics.json").read_text())
        report["vision_eval"] = {"n": m["n"], "model_accuracy": m["model"]["accuracy"], "model_macro_f1": m["model"]["macro_f1"],
                                 "pixel_lr_accuracy": m["baseline"]["accuracy"], "pixel_lr_macro_f1": m["baseline"]["macro_f1"],
                                 "mcnemar_p": m.get("paired", m.get("paired_test", {})).get("mcnemar_p")}
        gates = args.run / "compress" / "gates.json"
        if gates.is_file():
            report["compress_gates"] = json.loads(gates.read_text())
    else:
        from trainforge.vision.models import build_image_classifier

        torch.manual_seed(0)
        model = build_image_classifier("vit-tiny", [str(i) for i in range(10)], 32, 0.0)
        processor = classification_processor(32)
    side = processor.size["height"]
    images = []
    for i, im, _ in digit_images():
        images.append(im.convert("RGB").resize((side, side)))
        if len(images) == 256:
            break
    report["int8"] = int8_speedups(model, pixel_values(processor, images), args.threads, args.batches)
    if args.clip_run:
        m = json.loads((args.clip_run / "eval" / "metrics.json").read_text())
        report["clip_eval"] = {"n": m["n"], **{k: v for k, v in m["model"].items()},
                               **{f"random_{k}": v for k, v in m["baseline"].items() if k != "name"}}
    print(json.dumps(report, indent=1))
    for b in ("b1", "b32"):
        line = ", ".join(f"{k} {v['p50_ms']:.2f} ms ({v['speedup']:.2f}x)" for k, v in report["int8"][b].items())
        print(f"INT8 vs fp32 at {b}: {line}")


if __name__ == "__main__":
    main()
