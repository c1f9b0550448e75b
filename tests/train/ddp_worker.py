"""One rank of the distributed tests (spawned by test_distributed.py): DDP and FSDP against one process."""

from __future__ import annotations

import json
import os
import traceback
from pathlib import Path

import torch

STEPS, GLOBAL_BATCH = 3, 16


def single_process_reference(out: Path) -> None:
    """The same global batch through one process: gradients of one backward, weights after STEPS steps."""
    from transformers import LlamaForSequenceClassification

    from tests.train.conftest import PAD, llama_config, make_classification
    from trainforge.train.loop import collate, fit

    torch.manual_seed(0)
    model = LlamaForSequenceClassification(llama_config())
    data = make_classification(32)
    model(**collate(data, list(range(GLOBAL_BATCH)), PAD)).loss.backward()
    torch.save({n: p.grad.clone() for n, p in model.named_parameters()}, out / "grads-1.pt")
    model.zero_grad(set_to_none=True)
    fit(model, data, None, _cfg(), PAD, seed=0)
    torch.save(model.state_dict(), out / "weights-1.pt")
    for name, (model, data, loss_fn) in _token_loss_runs().items():
        fit(model, data, None, _cfg(), PAD, seed=0, loss_fn=loss_fn)
        torch.save(model.state_dict(), out / f"weights-{name}-1.pt")


def _token_loss_runs() -> dict:
    """Losses that are means over tokens, with different token counts per micro-batch: SFT (loss masked to
    the response) and a classifier with train.lm_loss. Fresh models, seeded."""
    from transformers import LlamaForCausalLM, LlamaForSequenceClassification

    from tests.train.conftest import llama_config, make_classification, make_sft
    from trainforge.train.lm_loss import auxiliary_loss

    torch.manual_seed(0)
    lm = LlamaForCausalLM(llama_config())
    torch.manual_seed(0)
    clf = LlamaForSequenceClassification(llama_config(tie_word_embeddings=True))
    return {"sft": (lm, make_sft(32), None),
            "lm_loss": (clf, make_classification(32), auxiliary_loss(1.0, clf.get_input_embeddings().weight))}


def _cfg(**kw):
    from trainforge.train.config import LoopConfig

    return LoopConfig(max_steps=STEPS, batch_size=GLOBAL_BATCH, lr=1e-2, log_every=1000, schedule={"warmup_ratio": 0.0}, **kw)


def rank_main(rank: int, world: int, out: str, port: int) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    out = Path(out)
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel
    from transformers import LlamaForSequenceClassification

    from tests.train.conftest import PAD, llama_config, make_classification
    from trainforge.train import distributed
    from trainforge.train.loop import collate, fit

    info = distributed.init(device=torch.device("cpu"))  # gloo even on a CUDA machine: the tests are CPU-only
    data = make_classification(32)
    # 1. gradients: this rank's half of the global batch through DDP (averaged over ranks)
    torch.manual_seed(0)
    model = LlamaForSequenceClassification(llama_config())
    ddp = DistributedDataParallel(model)
    ddp(**collate(data, list(range(GLOBAL_BATCH))[rank::world], PAD)).loss.backward()
    if info.is_main:
        torch.save({n: p.grad.clone() for n, p in model.named_parameters()}, out / "grads-ddp.pt")
    # 2. the loop itself under DDP for STEPS steps
    torch.manual_seed(0)
    model = LlamaForSequenceClassification(llama_config())
    fit(model, data, None, _cfg(), PAD, seed=0)
    if info.is_main:
        torch.save(model.state_dict(), out / "weights-ddp.pt")
    # 2b. token-mean losses under DDP with 2 micro-batches per rank
    for name, (model, data, loss_fn) in _token_loss_runs().items():
        fit(model, data, None, _cfg(grad_accum=2), PAD, seed=0, loss_fn=loss_fn)
        if info.is_main:
            torch.save(model.state_dict(), out / f"weights-{name}-ddp.pt")
    # 3. FSDP2 fully_shard, where this torch build supports it on this backend. fit leaves `model` a plain
    #    module holding the gathered full weights (what the train stage saves), so state_dict() is the check.
    status = {"fsdp": "ok"}
    try:
        from trainforge.train.lm_loss import auxiliary_loss, output_projection

        for name, accum in (("fsdp", 1), ("fsdp-accum", 2)):
            torch.manual_seed(0)
            model = LlamaForSequenceClassification(llama_config())
            fit(model, data, None, _cfg(distributed="fsdp", grad_accum=accum), PAD, seed=0)
            status[f"{name}-plain"] = not any(hasattr(p, "to_local") for p in model.parameters())
            if info.is_main:
                torch.save(model.state_dict(), out / f"weights-{name}.pt")
        # train.lm_loss under FSDP: the loss is built after fully_shard and reads the tied embedding live
        torch.manual_seed(0)
        model = LlamaForSequenceClassification(llama_config(tie_word_embeddings=True))
        fit(model, make_classification(32), None, _cfg(distributed="fsdp", grad_accum=2), PAD, seed=0,
            loss_fn_factory=lambda m: auxiliary_loss(1.0, output_projection(m, None, live=True)))
        if info.is_main:
            torch.save(model.state_dict(), out / "weights-lm_loss-fsdp.pt")
        # resume: an uninterrupted run checkpointing each step, then its checkpoints after step 1 removed
        # (a run killed after step 1) and resumed on 2 ranks
        ckpt = out / "fsdp-ckpt"
        torch.manual_seed(0)
        model = LlamaForSequenceClassification(llama_config(attention_dropout=0.2))  # dropout: the RNG matters
        val = make_classification(8, seed=1)
        fit(model, data, val, _cfg(distributed="fsdp", checkpoint_every=1, eval_every=2, keep_checkpoints=5), PAD,
            seed=0, checkpoint_dir=ckpt)
        if info.is_main:
            torch.save(model.state_dict(), out / "weights-fsdp-uninterrupted.pt")
            status["layout"] = sorted(os.listdir(ckpt / "step-00000001.dcp"))
            status["pt_keys"] = sorted(torch.load(ckpt / "step-00000001.pt", weights_only=False))
            for step in (2, 3):
                (ckpt / f"step-{step:08d}.pt").unlink()  # their .dcp folders stay behind: orphans, never read
            # a later save killed midway: a half-written DCP folder and .pt, which resume must not read
            (ckpt / "step-00000009.dcp.tmp").mkdir()
            (ckpt / "step-00000009.dcp.tmp" / ".metadata").write_bytes(b"half a metad")
            (ckpt / "step-00000009.pt.tmp").write_bytes(b"half a checkpoi")
        dist.barrier()
        torch.manual_seed(1)  # resume must not depend on the fresh model's initial weights
        model = LlamaForSequenceClassification(llama_config(attention_dropout=0.2))
        fit(model, data, val, _cfg(distributed="fsdp", checkpoint_every=1, eval_every=2, keep_checkpoints=5, resume=True),
            PAD, seed=0, checkpoint_dir=ckpt)
        if info.is_main:
            torch.save(model.state_dict(), out / "weights-fsdp-resumed.pt")
            status["tmp_left"] = sorted(p.name for p in ckpt.glob("*.tmp"))
        # reshard: checkpoints of 2 ranks that `reshard_main` resumes on 3 (no dropout: each rank's dropout
        # draws depend on the number of ranks; a batch of 12 splits evenly over 1, 2 and 3 ranks)
        torch.manual_seed(0)
        model = LlamaForSequenceClassification(llama_config())
        result = fit(model, make_classification(36), make_classification(8, seed=1), _reshard_cfg(), PAD, seed=0,
                     checkpoint_dir=out / "fsdp-reshard-ckpt")
        if info.is_main:
            torch.save(model.state_dict(), out / "weights-fsdp-reshard-uninterrupted.pt")
            status["reshard_best_step"] = result.best["step"]
            (out / "fsdp-reshard-ckpt" / f"step-{STEPS:08d}.pt").unlink()  # killed after step STEPS - 1
    except Exception as e:  # noqa: BLE001 — recorded; the test skips with the reason
        status = {"fsdp": f"unsupported: {type(e).__name__}: {e}", "trace": traceback.format_exc()[-2000:]}
    if info.is_main:
        (out / "status.json").write_text(json.dumps(status))
    dist.barrier()
    dist.destroy_process_group()


def _reshard_cfg(**kw):
    from trainforge.train.config import LoopConfig

    return LoopConfig(max_steps=STEPS, batch_size=12, lr=1e-2, log_every=1000, schedule={"warmup_ratio": 0.0},
                      distributed="fsdp", checkpoint_every=1, eval_every=1, keep_checkpoints=5, **kw)


def reshard_main(rank: int, world: int, out: str, port: int) -> None:
    """Resume `rank_main`'s 2-rank FSDP checkpoints on `world` ranks: DCP reshards weights and optimizer."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    out = Path(out)
    import torch.distributed as dist
    from transformers import LlamaForSequenceClassification

    from tests.train.conftest import PAD, llama_config, make_classification
    from trainforge.train import distributed
    from trainforge.train.loop import fit

    info = distributed.init(device=torch.device("cpu"))
    torch.manual_seed(1)  # resume must not depend on the fresh model's initial weights
    model = LlamaForSequenceClassification(llama_config())
    ckpt = out / "fsdp-reshard-ckpt"
    result = fit(model, make_classification(36), make_classification(8, seed=1), _reshard_cfg(resume=True), PAD, seed=0,
                 checkpoint_dir=ckpt)
    if info.is_main:
        torch.save(model.state_dict(), out / f"weights-fsdp-reshard-{world}.pt")
        (out / f"reshard-{world}.json").write_text(json.dumps({
            "best_step": result.best["step"], "steps": result.steps,
            "layout": sorted(os.listdir(ckpt / f"step-{STEPS:08d}.dcp"))}))
    dist.barrier()
    dist.destroy_process_group()
