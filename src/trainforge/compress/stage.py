"""The compress stage: build variants of model/, measure each beside it, gate, pick a candidate.

    model/ ──► int8_dynamic/  int8_weight_only/  magnitude_pruned/  structured_pruned/  distilled/
                  │ each saved (HF layout, safetensors) and reloaded from disk before it is measured
                  ▼
           metric on the held-out split · p50/p95 latency at batch 1 and 32 (round-robin with the
           original) · size on disk  ──►  gates.json  ──►  candidate.json (best passing, or none)
    onnx/model.onnx + parity.json   (the original, run through onnxruntime)

Writes compress/gates.json — a list of {name, passed, metric, metric_drop, speedup_b32, size_mb,
reasons} — compress/measurements.json (every figure, the original included) and
compress/candidate.json ({"name": null} when nothing passed: the original stays in service).
"""

from __future__ import annotations

import shutil
from dataclasses import asdict

from trainforge.compress.config import CompressConfig
from trainforge.console import console
from trainforge.data.io import read_jsonl
from trainforge.errors import UserError



def encode_split(rows: list[dict], tokenizer, label2id: dict[str, int], source: str):
    from trainforge.batching import Encoded

    unknown = sorted({r["label"] for r in rows} - set(label2id))
    if unknown:
        raise UserError(f"{source}: labels {unknown[:5]} are not in the model's label2id {sorted(label2id)}; "
                        f"re-run the train stage on this data")
    ids = tokenizer([r["text"] for r in rows], truncation=True, max_length=tokenizer.model_max_length)["input_ids"]
    return Encoded(ids, [label2id[r["label"]] for r in rows])


def is_decoder(model) -> bool:
    """Decoder classifiers get weight-only INT8 by default (compress.weight_only_int8: auto)."""
    from trainforge.models.families import family_of

    return family_of(model).int8_weight_only_by_default


def build_variants(cfg: CompressConfig, model, tokenizer, ctx, pad_id: int, probe: list[dict]) -> dict[str, dict]:
    """Build, save and record each enabled variant: {name: {"dir", "meta", "extra"}}.
    `probe`: a few batches of 32 to pick the INT8 kernel on (compress.int8_kernel=auto)."""
    from trainforge import paths
    from trainforge.compress.load import save_variant
    from trainforge.compress.measure import fastest_kernel
    from trainforge.compress.quantize import linear_weight_bytes, to_weight_only_int8

    out = ctx.path(paths.COMPRESS)
    built: dict[str, dict] = {}
    label2id = {k: int(v) for k, v in model.config.label2id.items()}

    def save(name, variant, meta, **extra):
        save_variant(variant, out / name, tokenizer, meta)
        if (ctx.path(paths.MODEL) / paths.MODEL_INFO_FILE).is_file():  # serve and register read the task from here
            shutil.copy(ctx.path(paths.MODEL) / paths.MODEL_INFO_FILE, out / name / paths.MODEL_INFO_FILE)
        built[name] = {"dir": out / name, "meta": meta, "extra": {"linear_mb": linear_weight_bytes(variant) / 1e6, **extra}}

    weight_only = cfg.weight_only_int8 if cfg.weight_only_int8 != "auto" else is_decoder(model)
    if cfg.int8 or weight_only:
        stored = to_weight_only_int8(model)
        scheme = "int8 symmetric per-output-channel weights, fp32 scales"
        if cfg.int8:
            kernel, kernel_ms = (fastest_kernel(stored, probe, cfg.threads) if cfg.int8_kernel == "auto"
                                 else (cfg.int8_kernel, {}))
            if kernel_ms:
                console.print(f"          INT8 kernel: {kernel} (ms per batch of 32: "
                              f"{', '.join(f'{k} {v:.1f}' for k, v in kernel_ms.items())})")
            save("int8_dynamic", stored, {"format": "int8", "runtime": "dynamic", "scheme": scheme, "kernel": kernel,
                                          "kernel_ms_b32": kernel_ms})
        if weight_only:
            save("int8_weight_only", stored, {"format": "int8", "runtime": "weight_only", "scheme": scheme})

    needs_train = cfg.structured is not None or cfg.distill is not None
    if needs_train:
        train = encode_split(read_jsonl(ctx.path(paths.TRAIN_SPLIT)), tokenizer, label2id, paths.TRAIN_SPLIT)
    if cfg.magnitude_sparsity is not None:
        from trainforge.compress.prune import magnitude_prune, measured_sparsity

        pruned = magnitude_prune(model, cfg.magnitude_sparsity)
        save("magnitude_pruned", pruned, {"format": "hf", "requested_sparsity": cfg.magnitude_sparsity},
             sparsity=round(measured_sparsity(pruned), 5))
    if cfg.structured is not None:
        save_structured(cfg, model, tokenizer, ctx, train, label2id, pad_id, save)
    if cfg.distill is not None:
        from trainforge.compress.distill import distill

        student, summary = distill(model, train, cfg.distill, pad_id, ctx.config.seed)
        save("distilled", student, {"format": "hf", "distill": {**cfg.distill.model_dump(), **summary}}, **summary)
    return built


def save_structured(cfg, model, tokenizer, ctx, train, label2id, pad_id, save) -> None:
    import random

    from trainforge.compress.prune import structured_prune
    from trainforge.batching import bucketed_batches, collate

    s = cfg.structured
    idx = bucketed_batches(train, 32, random.Random(ctx.config.seed))[: s.importance_batches]
    pruned, structure = structured_prune(model, s.fraction, [collate(train, i, pad_id) for i in idx])
    before, after = sum(p.numel() for p in model.parameters()), sum(p.numel() for p in pruned.parameters())
    if s.recovery_steps > 0:
        from trainforge.compress.finetune import train_steps

        train_steps(pruned, train, s.recovery_steps, s.recovery_lr, 32, pad_id, ctx.config.seed, description="recover")
    fmt = "hf" if structure["family"] == "llama" else "hf-structured"
    save("structured_pruned", pruned.eval(), {"format": fmt, "structure": structure, "recovery_steps": s.recovery_steps},
         params_before=before, params_after=after)


def run_compress(ctx) -> dict:
    import torch

    from trainforge import paths
    from trainforge.allocator import keep_freed_memory
    from trainforge.compress.gates import choose_candidate, judge
    from trainforge.compress.load import load_variant
    from trainforge.compress.measure import (Measurement, latency_batches, latency_table, param_count, score,
                                             weights_size_mb)
    from trainforge.compress.quantize import linear_weight_bytes
    from trainforge.models.load import refuse_virtual_tokens
    from trainforge.models.tokenizer import load_tokenizer
    from trainforge.tasks import task_for
    from trainforge.files import write_json_atomic

    cfg: CompressConfig = ctx.section
    out = ctx.path(paths.COMPRESS)
    if out.exists():
        shutil.rmtree(out)  # a variant left from an earlier config must not look current
    out.mkdir()
    model_dir = ctx.path(paths.MODEL)
    task, info = task_for(model_dir)
    if not task.compressible:
        raise UserError(f"compress: {model_dir} holds a {info.task} model; compress builds and gates variants of sequence "
                        f"classifiers — remove the compress: section for this run")
    tokenizer = load_tokenizer(model_dir)
    model = task.load_model(model_dir)  # a plain HF dir, or an adapter + base/ (unmerged LoRA merges on load)
    refuse_virtual_tokens(model, model_dir, "compress writes every variant as a plain transformers model (int8, pruned, "
                          "distilled, ONNX), which has no place for peft's learned virtual tokens",
                          "remove the compress: section, or train with method lora or full to compress the model")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    label2id = {k: int(v) for k, v in model.config.label2id.items()}
    split = encode_split(read_jsonl(ctx.path(paths.split_file(cfg.split))), tokenizer, label2id, paths.split_file(cfg.split))

    b1, b32 = latency_batches(split, cfg.latency_batches, pad_id, ctx.config.seed)
    _, probe = latency_batches(split, 3, pad_id, ctx.config.seed + 1)  # not the timed batches: no pick-then-measure bias
    built = build_variants(cfg, model, tokenizer, ctx, pad_id, probe=probe)
    if not built:
        raise UserError("compress: no variant enabled — set compress.int8, magnitude_sparsity, structured or distill")
    models = {"original": model} | {name: load_variant(v["dir"]) for name, v in built.items()}

    console.print(f"          timing {len(models)} models round-robin ({cfg.threads} thread(s), {len(b32)} batches of 32)")
    timing = latency_table(models, b1, b32, cfg.threads)
    measured: dict[str, Measurement] = {}
    for name, m in models.items():
        metrics, _ = score(m, split, pad_id)
        size = weights_size_mb(model_dir if name == "original" else built[name]["dir"])
        linear = linear_weight_bytes(m) / 1e6 if name == "original" else built[name]["extra"]["linear_mb"]
        measured[name] = Measurement(name, metrics, size_mb=size, linear_mb=round(linear, 4), params=param_count(m),
                                     **timing[name])

    base = measured["original"]
    results = []
    for name in built:
        m = measured[name]
        speedup = base.p50_b32_ms / m.p50_b32_ms
        results.append(judge(name, m.metrics[cfg.metric], base.metrics[cfg.metric], speedup, m.size_mb, cfg.gates))
    candidate = choose_candidate(results)

    write_json_atomic(out / "gates.json", [asdict(r) for r in results])
    extras = {name: {k: v for k, v in b["extra"].items() if k != "linear_mb"} | {"meta": b["meta"]} for name, b in built.items()}
    write_json_atomic(out / "measurements.json", {
        "metric": cfg.metric, "split": cfg.split, "threads": cfg.threads, "gates": cfg.gates.model_dump(),
        "variants": [measured[n].as_dict() | {"speedup_b1": round(base.p50_b1_ms / measured[n].p50_b1_ms, 3),
                                               "speedup_b32": round(base.p50_b32_ms / measured[n].p50_b32_ms, 3)}
                     | extras.get(n, {}) for n in measured],
        "torch": torch.__version__, "quantized_engine": torch.backends.quantized.engine,
        "keep_freed_memory": keep_freed_memory(),
    })
    write_json_atomic(out / "candidate.json", {
        "name": candidate.name if candidate else None,
        "path": f"compress/{candidate.name}" if candidate else None,
        "loader": "trainforge.compress.load:load_variant",
        "reason": "best passing variant (highest batch-32 speedup)" if candidate else "no variant passed its gates; keep model/",
        **({"gate": asdict(candidate)} if candidate else {}),
    })
    for r in results:
        verdict = "[green]PASS[/]" if r.passed else "[red]FAIL[/]"
        console.print(f"          {r.name:<18} {verdict} {cfg.metric} {r.metric:.4f} (drop {r.metric_drop:+.4f}) "
                      f"speedup@32 {r.speedup_b32:.2f}x size {r.size_mb:.2f} MB  {'; '.join(r.reasons)}")
    console.print(f"          deploy candidate: {candidate.name if candidate else 'none (the original stays)'}")

    flat: dict[str, float] = {"variants": len(results), "passed": sum(r.passed for r in results),
                              "original_metric": base.metrics[cfg.metric], "original_p50_b32_ms": base.p50_b32_ms}
    for r in results:
        flat.update({f"{r.name}_metric": r.metric, f"{r.name}_speedup_b32": r.speedup_b32,
                     f"{r.name}_size_mb": r.size_mb, f"{r.name}_passed": float(r.passed)})
    if cfg.onnx:
        flat.update(run_onnx(model, b32[:3], out, cfg))
    return flat


def run_onnx(model, batches, out, cfg: CompressConfig) -> dict:
    from trainforge.compress.onnx_export import export_onnx, onnx_parity, write_parity

    path = export_onnx(model, batches[0], out / "onnx" / "model.onnx")
    parity = write_parity(onnx_parity(model, path, batches, cfg.threads), cfg.onnx_tolerance, out / "onnx" / "parity.json")
    verdict = "[green]matches[/]" if parity["passed"] else "[red]DOES NOT MATCH[/]"
    console.print(f"          onnx: onnxruntime {verdict} PyTorch (max |Δlogit| {parity['max_abs_diff']:.2e}, tolerance {cfg.onnx_tolerance})")
    return {"onnx_max_abs_diff": parity["max_abs_diff"], "onnx_parity_passed": float(parity["passed"])}
