"""The compress stage for image classifiers: INT8 and pruning under the same gates as text classifiers.

    model/ ──► int8_dynamic/      torch dynamic INT8 on every nn.Linear (compress/quantize.py's stored form)
               magnitude_pruned/  global magnitude pruning of the blocks' Linear weights (compress/prune.py)
    each is saved, reloaded from disk, scored on the held-out split and timed round-robin with the original
    at batch 1 and 32 (compress/measure.py), then gated (compress/gates.py) → gates.json, candidate.json

Where a method cannot apply, the variant is not built and compress/refused.json says why:

    conv nets (MobileNetV2, EfficientNet)  dynamic INT8 quantises Linear layers only; their work is in Conv2d
                                           layers (the one Linear is the head), so INT8 would change nothing but
                                           the head — refused (static INT8 of convolutions needs calibration and
                                           a quantisable graph, which transformers' conv nets are not written for)
    magnitude pruning of a conv net        no Linear layers in its blocks to prune
    structured pruning, distillation       written for BERT/Llama block layouts (text classifiers)
    weight-only INT8                       for memory-bound decoders; an image classifier is compute-bound
"""

from __future__ import annotations

import shutil
from dataclasses import asdict
from pathlib import Path

from trainforge.console import console
from trainforge.data.io import read_jsonl


def load_image_variant(model_dir: Path):
    """A compressed image classifier (compress/<variant>/) or a plain one, in eval mode."""
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForImageClassification

    from trainforge.compress.load import INT8_WEIGHTS, read_meta, usable_kernel
    from trainforge.compress.quantize import to_dynamic_int8, to_weight_only_int8

    model_dir = Path(model_dir)
    meta = read_meta(model_dir)
    if meta.get("format") != "int8":
        return AutoModelForImageClassification.from_pretrained(model_dir).eval()
    model = to_weight_only_int8(AutoModelForImageClassification.from_config(AutoConfig.from_pretrained(model_dir)))
    model.load_state_dict(load_file(model_dir / INT8_WEIGHTS))
    return to_dynamic_int8(model, usable_kernel(meta.get("kernel"), model_dir)).eval()


def refusals(cfg, family) -> dict[str, str]:
    out = {}
    if cfg.int8 and not family.int8_dynamic:
        out["int8_dynamic"] = (f"{family.name} is a conv net: dynamic INT8 quantises nn.Linear layers only and its work is "
                               f"in Conv2d layers, so only the classification head would change")
    if cfg.magnitude_sparsity is not None and not family.int8_dynamic:
        out["magnitude_pruned"] = f"{family.name} has no Linear layers in its blocks to prune (its blocks are convolutions)"
    if cfg.structured is not None:
        out["structured_pruned"] = "structured pruning is written for BERT/Llama blocks (heads and FFN neurons)"
    if cfg.distill is not None:
        out["distilled"] = "distillation is written for text classifiers"
    if cfg.weight_only_int8 is True:
        out["int8_weight_only"] = "weight-only INT8 is for memory-bound decoders; an image classifier is compute-bound"
    return out


def compress_image_classifier(task, ctx) -> dict:
    import torch

    from trainforge import paths
    from trainforge.compress.gates import choose_candidate, judge
    from trainforge.compress.load import save_variant
    from trainforge.compress.measure import latency_table, param_count, weights_size_mb
    from trainforge.compress.prune import magnitude_prune, measured_sparsity
    from trainforge.compress.quantize import available_kernels, linear_weight_bytes, to_weight_only_int8
    from trainforge.errors import UserError
    from trainforge.evaluate.metrics import classification_metrics
    from trainforge.files import write_json_atomic
    from trainforge.models.families import family_of

    cfg = ctx.section
    out = ctx.path(paths.COMPRESS)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir()
    model_dir = ctx.path(paths.MODEL)
    model, processor = task.load_model(model_dir).eval(), task.load_processor(model_dir)
    family = family_of(model)
    enc = task.encode(read_jsonl(ctx.path(paths.split_file(cfg.split))), processor, held_out=True)
    refused = refusals(cfg, family)
    for name, why in refused.items():
        console.print(f"          {name:<18} [yellow]refused[/]: {why}")

    def save(name: str, variant, meta: dict) -> Path:
        save_variant(variant, out / name, processor, meta)
        shutil.copy(model_dir / paths.MODEL_INFO_FILE, out / name / paths.MODEL_INFO_FILE)
        return out / name

    built: dict[str, Path] = {}
    if cfg.int8 and "int8_dynamic" not in refused:
        kernel = cfg.int8_kernel if cfg.int8_kernel != "auto" else (available_kernels() or [None])[0]
        built["int8_dynamic"] = save("int8_dynamic", to_weight_only_int8(model), {
            "format": "int8", "runtime": "dynamic", "kernel": kernel,
            "scheme": "int8 symmetric per-output-channel weights, fp32 scales; activations quantised per batch"})
    if cfg.magnitude_sparsity is not None and "magnitude_pruned" not in refused:
        try:
            pruned = magnitude_prune(model, cfg.magnitude_sparsity)
        except UserError as e:
            refused["magnitude_pruned"] = str(e)
        else:
            built["magnitude_pruned"] = save("magnitude_pruned", pruned, {"format": "hf", "requested_sparsity": cfg.magnitude_sparsity,
                                                                          "sparsity": round(measured_sparsity(pruned), 5)})
    write_json_atomic(out / "refused.json", refused)
    if not built:
        raise UserError(f"compress: no variant could be built for this {family.name} model — "
                        + "; ".join(f"{k}: {v}" for k, v in refused.items()) if refused else
                        "compress: no variant enabled — set compress.int8 or magnitude_sparsity")

    models = {"original": model} | {name: load_image_variant(d) for name, d in built.items()}
    px = enc.pixels
    b32 = [{"pixel_values": px[(i * 32) % len(px):(i * 32) % len(px) + 32]} for i in range(cfg.latency_batches)]
    b32 = [b for b in b32 if len(b["pixel_values"]) == 32] or [{"pixel_values": px[:32]}]
    b1 = [{"pixel_values": px[i:i + 1]} for i in range(2 * cfg.latency_batches)]
    console.print(f"          timing {len(models)} models round-robin on cpu ({cfg.threads} thread(s), {len(b32)} batches of 32)")
    timing = latency_table(models, b1, b32, cfg.threads)
    y = [str(v) for v in enc.labels]
    measured = {}
    for name, m in models.items():
        with torch.inference_mode():
            pred = task.logits(m, enc).argmax(-1).tolist()
        measured[name] = {"metrics": classification_metrics(y, [str(p) for p in pred]), **timing[name], "params": param_count(m),
                          "size_mb": weights_size_mb(model_dir if name == "original" else built[name]),
                          "linear_mb": round(linear_weight_bytes(m) / 1e6, 4)}
    base = measured["original"]
    results = [judge(n, measured[n]["metrics"][cfg.metric], base["metrics"][cfg.metric],
                     base["p50_b32_ms"] / measured[n]["p50_b32_ms"], measured[n]["size_mb"], cfg.gates,
                     speedup_b1=base["p50_b1_ms"] / measured[n]["p50_b1_ms"]) for n in built]
    candidate = choose_candidate(results)
    write_json_atomic(out / "gates.json", [asdict(r) for r in results])
    write_json_atomic(out / "measurements.json", {
        "metric": cfg.metric, "split": cfg.split, "threads": cfg.threads, "gates": cfg.gates.model_dump(), "refused": refused,
        "variants": [{"name": n, **m, "speedup_b1": round(base["p50_b1_ms"] / m["p50_b1_ms"], 3),
                      "speedup_b32": round(base["p50_b32_ms"] / m["p50_b32_ms"], 3)} for n, m in measured.items()],
        "torch": torch.__version__, "quantized_engine": torch.backends.quantized.engine})
    write_json_atomic(out / "candidate.json", {
        "name": candidate.name if candidate else None, "path": f"compress/{candidate.name}" if candidate else None,
        "loader": "trainforge.vision.compress:load_image_variant",
        "reason": "best passing variant (highest batch-32 speedup)" if candidate else "no variant passed its gates; keep model/"})
    for r in results:
        verdict = "[green]PASS[/]" if r.passed else "[red]FAIL[/]"
        m = measured[r.name]
        console.print(f"          {r.name:<18} {verdict} {cfg.metric} {r.metric:.4f} (drop {r.metric_drop:+.4f}) speedup@1 "
                      f"{base['p50_b1_ms'] / m['p50_b1_ms']:.2f}x @32 {r.speedup_b32:.2f}x size {r.size_mb:.2f} MB  {'; '.join(r.reasons)}")
    flat = {"variants": len(results), "passed": sum(r.passed for r in results), "refused": len(refused),
            "original_metric": base["metrics"][cfg.metric], "original_p50_b32_ms": base["p50_b32_ms"]}
    for r in results:
        flat.update({f"{r.name}_metric": r.metric, f"{r.name}_speedup_b32": r.speedup_b32, f"{r.name}_passed": float(r.passed)})
    return flat
