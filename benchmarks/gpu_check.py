"""The GPU check: one script, a few minutes on one GPU, run whenever a GPU machine is lent.

    1. the device: name, memory, bf16 support, measured bf16 and fp32 (TF32) matmul peaks
    2. a small Llama classifier fit on CUDA in bf16: where its parameters are, peak memory beside our estimate
    3. 20 steps on CPU in fp32 and on CUDA in bf16 from the same weights and batches: losses within 2%
    4. resume parity with deterministic kernels: 20 steps straight == 10 steps, checkpoint, 10 more
    5. FSDP2 on a one-rank NCCL group with gradient accumulation 2, and a torch.distributed.checkpoint round trip
    6. tokens/s and MFU (against the measured bf16 peak) of our loop and Hugging Face Trainer, same model and batch
    7. batched generation (serve's KV-cache engine) against sequential generate() on the GPU

Prints one JSON object (and writes it to --out). Without CUDA it says so and exits 0: CI has no GPU.
Run: .venv/bin/python benchmarks/gpu_check.py [--out gpu_check.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

VOCAB = 8000


def matmul_peak(dtype, n: int = 8192, reps: int = 10) -> float:
    """FLOP/s of an n×n matmul on cuda:0 (best of reps, after a warm-up): the MFU denominator."""
    import torch

    a, b = torch.randn(n, n, device="cuda", dtype=dtype), torch.randn(n, n, device="cuda", dtype=dtype)
    a @ b
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def classifier(seed: int = 0, hidden: int = 512, layers: int = 8):
    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification

    torch.manual_seed(seed)
    return LlamaForSequenceClassification(LlamaConfig(
        vocab_size=VOCAB, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=8, num_key_value_heads=8,
        intermediate_size=hidden * 4, max_position_embeddings=512, pad_token_id=0, num_labels=2, attention_dropout=0.0))


def examples(n: int, seed: int = 0):
    """Token sequences of varied length whose label is whether token 7 occurs (learnable, like the loop tests)."""
    from trainforge.batching import Encoded

    rng = random.Random(seed)
    ids, labels = [], []
    for i in range(n):
        seq = [rng.randrange(8, VOCAB) for _ in range(rng.randrange(32, 256))]
        if i % 2:
            seq[rng.randrange(len(seq))] = 7
        ids.append([1] + seq + [2])
        labels.append(i % 2)
    return Encoded(ids, labels)


def loop_cfg(**kw):
    from trainforge.train.config import LoopConfig

    base = dict(max_steps=20, batch_size=32, lr=3e-4, log_every=10**9, eval_every=10**9, schedule={"warmup_ratio": 0.0})
    return LoopConfig(**{**base, **kw})


def fit_on(device, precision: str, steps: int = 20, **kw):
    import torch

    from trainforge.train.loop import fit

    model = classifier()
    torch.cuda.reset_peak_memory_stats()
    result = fit(model, examples(640), None, loop_cfg(max_steps=steps, precision=precision, **kw), 0, 0, device=device)
    return model, result


def check_device() -> dict:
    import torch

    from trainforge.device import describe, resolve_device

    device = resolve_device("auto")
    peak_bf16 = matmul_peak(torch.bfloat16)
    torch.backends.cuda.matmul.allow_tf32 = True
    peak_tf32 = matmul_peak(torch.float32)
    return {**describe(device), "bf16_matmul_tflops": round(peak_bf16 / 1e12, 1), "tf32_matmul_tflops": round(peak_tf32 / 1e12, 1),
            "_peak_bf16": peak_bf16}


def check_fit_bf16() -> dict:
    import torch

    from trainforge.device import resolve_device
    from trainforge.train import memory

    device = resolve_device("cuda")
    model, result = fit_on(device, "bf16")
    est = memory.estimate(model, result.micro_batch, 258, "bf16", False)
    peak = torch.cuda.max_memory_allocated(device)
    return {"parameter_devices": sorted({str(p.device) for p in model.parameters()}),
            "parameter_dtypes": sorted({str(p.dtype) for p in model.parameters()}),
            "peak_allocated_gib": round(peak / (1 << 30), 3), "estimate_gib": round(est.total / (1 << 30), 3),
            "estimate_over_peak": round(est.total / peak, 2), "final_loss": result.history[-1]["loss"]}


def check_cpu_vs_cuda() -> dict:
    import torch

    _, cpu = fit_on(torch.device("cpu"), "fp32")
    _, gpu = fit_on(torch.device("cuda"), "bf16")
    rel = [abs(a["loss"] - b["loss"]) / max(1e-8, abs(a["loss"])) for a, b in zip(cpu.history, gpu.history)]
    return {"cpu_fp32_losses": [h["loss"] for h in cpu.history], "cuda_bf16_losses": [h["loss"] for h in gpu.history],
            "max_relative_diff": round(max(rel), 4), "within_2_percent": max(rel) <= 0.02}


def check_resume() -> dict:
    """20 steps with checkpoints at 10 and 20; drop the step-20 one (as if killed after step 10), resume, compare."""
    import torch

    from trainforge.train.checkpoint import checkpoint_path
    from trainforge.train.loop import fit

    device = torch.device("cuda")
    with tempfile.TemporaryDirectory() as tmp:
        straight = classifier()
        fit(straight, examples(640), None, loop_cfg(checkpoint_every=10, deterministic=True), 0, 0, device=device,
            checkpoint_dir=Path(tmp))
        checkpoint_path(Path(tmp), 20).unlink()
        resumed = classifier()
        fit(resumed, examples(640), None, loop_cfg(checkpoint_every=10, deterministic=True, resume=True), 0, 0, device=device,
            checkpoint_dir=Path(tmp))
    diff = max(float((a.float() - b.float()).abs().max()) for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()))
    return {"max_abs_weight_diff": diff, "bit_identical": diff == 0.0}


def check_fsdp() -> dict:
    import torch
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    from trainforge.train.loop import fit

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="29533", RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
    from trainforge.train.distributed import init

    init()
    try:
        model = classifier()
        result = fit(model, examples(320), None, loop_cfg(max_steps=6, grad_accum=2, distributed="fsdp", precision="bf16"), 0, 0,
                     device=torch.device("cuda"))
        with tempfile.TemporaryDirectory() as tmp:
            state = get_model_state_dict(model)
            dcp.save(state, checkpoint_id=tmp)
            again = {k: torch.zeros_like(v) for k, v in state.items()}
            dcp.load(again, checkpoint_id=tmp)
            same = all(torch.equal(state[k].full_tensor() if hasattr(state[k], "full_tensor") else state[k],
                                   again[k].full_tensor() if hasattr(again[k], "full_tensor") else again[k]) for k in state)
        return {"backend": str(dist.get_backend()), "steps": result.steps, "grad_accum": result.grad_accum,
                "dcp_round_trip_equal": same}
    finally:
        dist.destroy_process_group()
        for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
            os.environ.pop(k, None)


def check_throughput(peak_bf16: float) -> dict:
    import torch
    from transformers import Trainer, TrainingArguments

    from trainforge.train.loop import fit

    enc = examples(32 * 30)
    mean_len = sum(map(len, enc.input_ids)) / len(enc)

    def flops_per_token(model) -> float:
        c = model.config
        matmul = sum(p.numel() for n, p in model.named_parameters() if p.ndim == 2 and "embed_tokens" not in n)
        return 6 * matmul + 12 * c.num_hidden_layers * c.hidden_size * mean_len

    model = classifier()
    fit(model, enc, None, loop_cfg(max_steps=3, precision="bf16"), 0, 0, device=torch.device("cuda"))  # warm-up
    model = classifier()
    t = time.perf_counter()
    ours = fit(model, enc, None, loop_cfg(max_steps=30, precision="bf16"), 0, 0, device=torch.device("cuda"))
    torch.cuda.synchronize()
    ours_s = time.perf_counter() - t
    ours_tps = ours.tokens / ours_s

    rows = [{"input_ids": ids, "labels": y} for ids, y in zip(enc.input_ids, enc.labels)]
    real = {"n": 0}

    def collate(features):
        width = max(len(f["input_ids"]) for f in features)
        ids = torch.zeros((len(features), width), dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, f in enumerate(features):
            ids[i, : len(f["input_ids"])] = torch.tensor(f["input_ids"])
            mask[i, : len(f["input_ids"])] = 1
        real["n"] += int(mask.sum())
        return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([f["labels"] for f in features])}

    hf = classifier()
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(out, per_device_train_batch_size=32, max_steps=30, learning_rate=3e-4, bf16=True,
                                 logging_strategy="no", save_strategy="no", report_to=[], disable_tqdm=True, seed=0,
                                 dataloader_num_workers=0)
        trainer = Trainer(model=hf, args=args, train_dataset=rows, data_collator=collate)
        t = time.perf_counter()
        trainer.train()
        torch.cuda.synchronize()
        hf_s = time.perf_counter() - t
    hf_tps = real["n"] / hf_s
    fpt = flops_per_token(model)
    return {"batch": 32, "steps": 30, "ours_tokens_per_s": round(ours_tps), "trainer_tokens_per_s": round(hf_tps),
            "ours_over_trainer": round(ours_tps / hf_tps, 2), "ours_mfu": round(ours_tps * fpt / peak_bf16, 4),
            "trainer_mfu": round(hf_tps * fpt / peak_bf16, 4)}


def check_serving() -> dict:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from trainforge.models.tokenizer import train_bpe
    from trainforge.serve.batching import GenRequest, generate_batch
    from trainforge.serve.engine import load_engine

    texts = [f"request {i}: the quick brown fox jumps over the lazy dog" for i in range(64)]
    with tempfile.TemporaryDirectory() as tmp:
        tok = train_bpe(texts * 4, 500, 1, 256, family="llama")
        torch.manual_seed(0)
        LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=512, num_hidden_layers=8, num_attention_heads=8,
                                     num_key_value_heads=8, intermediate_size=2048, max_position_embeddings=512,
                                     pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                                     eos_token_id=tok.eos_token_id)).save_pretrained(tmp)
        tok.save_pretrained(tmp)
        engine = load_engine(Path(tmp))
        engine.eos_ids = set()
        model = engine.model
        new = 32
        t = time.perf_counter()
        with torch.inference_mode():
            for p in texts:
                ids = tok(p, return_tensors="pt").to(model.device)
                model.generate(**ids, max_new_tokens=new, min_new_tokens=new, do_sample=False, pad_token_id=tok.pad_token_id)
        torch.cuda.synchronize()
        sequential = len(texts) * new / (time.perf_counter() - t)
        t = time.perf_counter()
        for i in range(0, len(texts), 32):
            generate_batch(engine, [GenRequest(engine.encode(p), new, 0.0) for p in texts[i : i + 32]])
        torch.cuda.synchronize()
        batched = len(texts) * new / (time.perf_counter() - t)
    return {"model_device": str(model.device), "sequential_generate_tok_s": round(sequential),
            "batched_engine_tok_s": round(batched), "batched_over_sequential": round(batched / sequential, 2)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="gpu_check.json")
    args = ap.parse_args()
    import torch

    if not torch.cuda.is_available():
        print(json.dumps({"cuda": False, "message": "no CUDA device on this machine: nothing to check (run it on a GPU machine)"}))
        return 0
    out: dict = {"torch": torch.__version__}
    checks = [("device", check_device), ("fit_bf16", check_fit_bf16), ("cpu_fp32_vs_cuda_bf16", check_cpu_vs_cuda),
              ("resume_deterministic", check_resume), ("fsdp_one_rank_nccl", check_fsdp)]
    for name, fn in checks:
        t = time.perf_counter()
        try:
            out[name] = fn()
        except Exception as e:  # noqa: BLE001 — one failing check must not hide the others' figures
            out[name] = {"error": f"{type(e).__name__}: {e}"}
        out[name]["seconds"] = round(time.perf_counter() - t, 1)
        print(name, json.dumps(out[name], default=str)[:400], flush=True)
    peak = out["device"].pop("_peak_bf16", None)
    for name, fn in [("throughput_vs_trainer", lambda: check_throughput(peak)), ("serving", check_serving)]:
        t = time.perf_counter()
        try:
            out[name] = fn() if peak else {"error": "no measured peak"}
        except Exception as e:  # noqa: BLE001
            out[name] = {"error": f"{type(e).__name__}: {e}"}
        out[name]["seconds"] = round(time.perf_counter() - t, 1)
        print(name, json.dumps(out[name], default=str)[:400], flush=True)
    Path(args.out).write_text(json.dumps(out, indent=1, default=str))
    print(json.dumps(out, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
