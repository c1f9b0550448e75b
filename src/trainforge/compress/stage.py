"""The compress stage: build variants of model/, measure each beside it, gate, pick a candidate.

    model/ ──► int8_dynamic/  int8_weight_only/  magnitude_pruned/  structured_pruned/  distilled/
                  │ each saved (HF layout, safetensors) and reloaded from disk before it is measured
                  ▼
           metric on the held-out split · p50/p95 latency at batch 1 and 32 (round-robin with the
           original) · size on disk  ──►  gates.json  ──►  candidate.json (best passing, or none)
    onnx/model.onnx + parity.json   (the original, run through onnxruntime)

Writes compress/gates.json — a list of {name, passed, metric, metric_drop, speedup_b32, speedup_b1, slower_at, size_mb,
reasons, verdict} — compress/measurements.json (every figure, the original included) and
compress/candidate.json ({"name": null} when nothing passed: the original stays in service).

Where each model is measured (the run's `device:`):

    device: cpu     every model on the CPU, one round-robin (as on a CPU-only build)
    device: cuda    original and float variants (pruned, distilled) on the GPU, one round-robin there;
                    INT8 variants on the CPU beside a CPU copy of the original (torch.ao's dynamic
                    int8 linears are CPU kernels), each gate against the original on its own device.
                    Such entries carry "device" and "note" in gates.json and measurements.json.

A CPU INT8 time is never divided by a GPU fp32 time. Pruning, recovery and distillation train on
the device too; the INT8 codes are built from the CPU copy.
"""

from __future__ import annotations

import copy
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


CPU_ONLY_NOTE = {"int8_dynamic": "int8 dynamic is a CPU kernel; compared with the original on CPU",
                 "int8_weight_only": "int8 weight-only is measured as a CPU kernel; compared with the original on CPU"}


def measured_on(meta: dict, device):
    """The device a variant is measured on: INT8 stays on the CPU, everything else goes to `device`."""
    import torch

    return torch.device("cpu") if meta.get("format") == "int8" else device


def build_variants(cfg: CompressConfig, model, tokenizer, ctx, pad_id: int, probe: list[dict], device=None) -> dict[str, dict]:
    """Build, save and record each enabled variant: {name: {"dir", "meta", "extra"}}.
    `model` is on the CPU; `device` is where recovery and distillation train (None: the CPU).
    `probe`: a few batches of 32 to pick the INT8 kernel on (compress.int8_kernel=auto)."""
    from trainforge import paths
    from trainforge.compress.load import save_variant
    from trainforge.compress.measure import fastest_kernel
    from trainforge.compress.quantize import linear_weight_bytes, to_weight_only_int8, weights_outside_linears

    out = ctx.path(paths.COMPRESS)
    built: dict[str, dict] = {}
    label2id = {k: int(v) for k, v in model.config.label2id.items()}

    def save(name, variant, meta, **extra):
        save_variant(variant, out / name, tokenizer, meta)
        if (ctx.path(paths.MODEL) / paths.MODEL_INFO_FILE).is_file():  # serve and register read the task from here
            shutil.copy(ctx.path(paths.MODEL) / paths.MODEL_INFO_FILE, out / name / paths.MODEL_INFO_FILE)
        built[name] = {"dir": out / name, "meta": meta, "extra": {"linear_mb": linear_weight_bytes(variant) / 1e6, **extra}}

    weight_only = cfg.weight_only_int8 if cfg.weight_only_int8 != "auto" else is_decoder(model)
    outside = weights_outside_linears(model)  # a MoE's fused experts and routers: what INT8/pruning cannot reach
    if outside and (cfg.int8 or weight_only or cfg.magnitude_sparsity is not None):
        console.print(f"[yellow]          {outside['share']:.0%} of the parameters ({', '.join(outside['names'])}) are "
                      f"{outside['reason']}; INT8 and magnitude pruning apply to the Linear layers only[/]")
    if cfg.int8 or weight_only:
        stored = to_weight_only_int8(model)
        scheme = "int8 symmetric per-output-channel weights, fp32 scales"
        if outside:
            scheme += f"; {outside['share']:.0%} of the parameters left in float ({', '.join(outside['names'])})"
        if cfg.int8:
            kernel, kernel_ms = (fastest_kernel(stored, probe, cfg.threads) if cfg.int8_kernel == "auto"
                                 else (cfg.int8_kernel, {}))
            if kernel_ms:
                console.print(f"          INT8 kernel: {kernel} (ms per batch of 32: "
                              f"{', '.join(f'{k} {v:.1f}' for k, v in kernel_ms.items())})")
            save("int8_dynamic", stored, {"format": "int8", "runtime": "dynamic", "scheme": scheme, "kernel": kernel,
                                          "kernel_ms_b32": kernel_ms, **({"not_quantized": outside} if outside else {})})
        if weight_only:
            save("int8_weight_only", stored, {"format": "int8", "runtime": "weight_only", "scheme": scheme,
                                              **({"not_quantized": outside} if outside else {})})

    needs_train = cfg.structured is not None or cfg.distill is not None
    if needs_train:
        train = encode_split(read_jsonl(ctx.path(paths.TRAIN_SPLIT)), tokenizer, label2id, paths.TRAIN_SPLIT)
    if cfg.magnitude_sparsity is not None:
        from trainforge.compress.prune import magnitude_prune, measured_sparsity

        pruned = magnitude_prune(model, cfg.magnitude_sparsity)
        save("magnitude_pruned", pruned, {"format": "hf", "requested_sparsity": cfg.magnitude_sparsity,
                                          **({"not_pruned": outside} if outside else {})},
             sparsity=round(measured_sparsity(pruned), 5))
    if cfg.structured is not None:
        save_structured(cfg, model, tokenizer, ctx, train, label2id, pad_id, save, device)
    if cfg.distill is not None:
        from trainforge.compress.distill import distill

        teacher = model if device is None or device.type == "cpu" else copy.deepcopy(model).to(device)
        student, summary = distill(teacher, train, cfg.distill, pad_id, ctx.config.seed)
        save("distilled", student, {"format": "hf", "distill": {**cfg.distill.model_dump(), **summary}}, **summary)
    return built


def save_structured(cfg, model, tokenizer, ctx, train, label2id, pad_id, save, device=None) -> None:
    import random

    from trainforge.compress.prune import structured_prune
    from trainforge.batching import bucketed_batches, collate

    s = cfg.structured
    idx = bucketed_batches(train, 32, random.Random(ctx.config.seed))[: s.importance_batches]
    pruned, structure = structured_prune(model, s.fraction, [collate(train, i, pad_id) for i in idx])
    before, after = sum(p.numel() for p in model.parameters()), sum(p.numel() for p in pruned.parameters())
    if s.recovery_steps > 0:
        from trainforge.compress.finetune import train_steps

        if device is not None:
            pruned.to(device)
        train_steps(pruned, train, s.recovery_steps, s.recovery_lr, 32, pad_id, ctx.config.seed, description="recover")
    fmt = "hf" if structure["family"] == "llama" else "hf-structured"
    save("structured_pruned", pruned.eval(), {"format": fmt, "structure": structure, "recovery_steps": s.recovery_steps},
         params_before=before, params_after=after)


def run_compress(ctx) -> dict:
    import torch

    from trainforge import paths
    from trainforge.allocator import keep_freed_memory
    from trainforge.compress.gates import choose_candidate, judge
    from trainforge.batching import model_device
    from trainforge.compress.load import load_variant
    from trainforge.compress.measure import (Measurement, latency_batches, latency_table, param_count, score,
                                             weights_size_mb)
    from trainforge.compress.quantize import linear_weight_bytes
    from trainforge.device import describe, resolve_device
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
    if hasattr(task, "compress"):  # a task with its own inputs (images: vision/compress.py) builds its variants itself
        return task.compress(ctx)
    device = resolve_device(ctx.config.device, "device")
    tokenizer = load_tokenizer(model_dir)
    # on the CPU: INT8 variants and the ONNX export are made from this copy (a GPU copy is measured)
    model = task.load_model(model_dir)  # a plain HF dir, or an adapter + base/ (unmerged LoRA merges on load)
    refuse_virtual_tokens(model, model_dir, "compress writes every variant as a plain transformers model (int8, pruned, "
                          "distilled, ONNX), which has no place for peft's learned virtual tokens",
                          "remove the compress: section, or train with method lora or full to compress the model")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    label2id = {k: int(v) for k, v in model.config.label2id.items()}
    split = encode_split(read_jsonl(ctx.path(paths.split_file(cfg.split))), tokenizer, label2id, paths.split_file(cfg.split))

    b1, b32 = latency_batches(split, cfg.latency_batches, pad_id, ctx.config.seed)
    _, probe = latency_batches(split, 3, pad_id, ctx.config.seed + 1)  # not the timed batches: no pick-then-measure bias
    built = build_variants(cfg, model, tokenizer, ctx, pad_id, probe=probe, device=device)
    if not built:
        raise UserError("compress: no variant enabled — set compress.int8, magnitude_sparsity, structured or distill")

    # each variant is timed and gated against the original on its own device (`reference`)
    on = {name: measured_on(v["meta"], device) for name, v in built.items()}
    cpu_side = [name for name in built if on[name] != device]  # INT8 on a GPU run: [] on a CPU run
    models = {"original": model if device.type == "cpu" else copy.deepcopy(model).to(device)}
    models |= {name: load_variant(v["dir"]).to(on[name]) for name, v in built.items()}
    groups = [["original"] + [n for n in built if n not in cpu_side]]
    if cpu_side:
        models["original_cpu"] = model
        groups.append(["original_cpu"] + cpu_side)
    reference = {name: "original_cpu" if name in cpu_side + ["original_cpu"] else "original" for name in models}

    timing: dict[str, dict] = {}
    for names in groups:
        where = model_device(models[names[0]])
        console.print(f"          timing {len(names)} models round-robin on {where} ({cfg.threads} thread(s), "
                      f"{len(b32)} batches of 32)")
        timing |= latency_table({n: models[n] for n in names}, b1, b32, cfg.threads)
    measured: dict[str, Measurement] = {}
    for name, m in models.items():
        metrics, _ = score(m, split, pad_id)
        size = weights_size_mb(model_dir if name in ("original", "original_cpu") else built[name]["dir"])
        linear = linear_weight_bytes(m) / 1e6 if name in ("original", "original_cpu") else built[name]["extra"]["linear_mb"]
        measured[name] = Measurement(name, metrics, size_mb=size, linear_mb=round(linear, 4), params=param_count(m),
                                     **timing[name])

    base = measured["original"]
    results = []
    for name in built:
        m, ref = measured[name], measured[reference[name]]
        speedup = ref.p50_b32_ms / m.p50_b32_ms
        results.append(judge(name, m.metrics[cfg.metric], ref.metrics[cfg.metric], speedup, m.size_mb, cfg.gates,
                             speedup_b1=ref.p50_b1_ms / m.p50_b1_ms))
    candidate = choose_candidate(results)

    # where a model ran, said only when it is not the run's device (a CPU run's files are as they always were)
    moved = {name: {"device": "cpu", "note": CPU_ONLY_NOTE.get(name, "a CPU kernel; compared with the original on CPU")}
             for name in cpu_side}
    if cpu_side:
        moved["original_cpu"] = {"device": "cpu", "note": "the original on CPU: what the CPU-only variants are compared with"}
    write_json_atomic(out / "gates.json", [asdict(r) | {"verdict": r.verdict} | moved.get(r.name, {}) for r in results])
    extras = {name: {k: v for k, v in b["extra"].items() if k != "linear_mb"} | {"meta": b["meta"]} for name, b in built.items()}

    def speedups(n: str) -> dict:
        ref = measured[reference[n]]
        return {"speedup_b1": round(ref.p50_b1_ms / measured[n].p50_b1_ms, 3),
                "speedup_b32": round(ref.p50_b32_ms / measured[n].p50_b32_ms, 3)}

    write_json_atomic(out / "measurements.json", {
        "metric": cfg.metric, "split": cfg.split, "threads": cfg.threads, "gates": cfg.gates.model_dump(),
        "device": describe(device),
        "variants": [measured[n].as_dict() | speedups(n) | {"device": str(model_device(models[n]))}
                     | moved.get(n, {}) | extras.get(n, {}) for n in measured],
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
                      f"speedup@1 {r.speedup_b1:.2f}x @32 {r.speedup_b32:.2f}x size {r.size_mb:.2f} MB  {'; '.join(r.reasons)}"
                      + (f"  slower than the original at batch {' and '.join(map(str, r.slower_at))}" if r.slower_at else ""))
    console.print(f"          deploy candidate: {candidate.name if candidate else 'none (the original stays)'}")

    flat: dict[str, float] = {"variants": len(results), "passed": sum(r.passed for r in results),
                              "original_metric": base.metrics[cfg.metric], "original_p50_b32_ms": base.p50_b32_ms}
    for r in results:
        flat.update({f"{r.name}_metric": r.metric, f"{r.name}_speedup_b32": r.speedup_b32,
                     f"{r.name}_size_mb": r.size_mb, f"{r.name}_passed": float(r.passed),
                     f"{r.name}_p50_b1_ms": measured[r.name].p50_b1_ms})  # a tune objective: latency at batch 1
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
