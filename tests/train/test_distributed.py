"""2-rank DDP (gloo, CPU) gives the gradients and weights of one process on the same global batch; FSDP where supported."""

from __future__ import annotations

import json
import socket

import pytest
import torch


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    import torch.distributed as dist
    import torch.multiprocessing as mp

    from tests.train.ddp_worker import rank_main, single_process_reference

    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("this torch build has no gloo backend")
    out = tmp_path_factory.mktemp("ddp")
    torch.set_num_threads(1)
    single_process_reference(out)
    mp.spawn(rank_main, args=(2, str(out), _free_port()), nprocs=2, join=True)
    return out


def test_ddp_gradients_equal_one_process(runs):
    one, ddp = torch.load(runs / "grads-1.pt"), torch.load(runs / "grads-ddp.pt")
    assert one.keys() == ddp.keys()
    for k in one:
        assert torch.allclose(one[k], ddp[k], atol=1e-6), k


def test_loop_under_ddp_matches_one_process(runs):
    one, ddp = torch.load(runs / "weights-1.pt"), torch.load(runs / "weights-ddp.pt")
    for k in one:
        assert torch.allclose(one[k], ddp[k], atol=1e-5), k


@pytest.mark.parametrize("task", ["sft", "lm_loss"])
def test_token_mean_losses_under_ddp_and_accumulation_match_one_process(runs, task):
    """2 ranks × 2 micro-batches, each holding a different number of target tokens: the same weights as one
    process on the whole batch, because the loop divides summed token losses by the global batch's count."""
    one, ddp = torch.load(runs / f"weights-{task}-1.pt"), torch.load(runs / f"weights-{task}-ddp.pt")
    for k in one:
        assert torch.allclose(one[k], ddp[k], atol=1e-5), k


def _fsdp(runs) -> dict:
    status = json.loads((runs / "status.json").read_text())
    if status["fsdp"] != "ok":
        pytest.skip(f"FSDP fully_shard on CPU/gloo: {status['fsdp']}")
    return status


@pytest.mark.parametrize("name", ["fsdp", "fsdp-accum"])
def test_fsdp_matches_one_process_where_supported(runs, name):
    """2 ranks, 1 or 2 micro-batches each (no gradient sync until the last: set_requires_gradient_sync);
    the weights fit leaves in the caller's model are the gathered full ones, equal to one process's."""
    status = _fsdp(runs)
    assert status[f"{name}-plain"], "fit left DTensor shards in the caller's model"
    one, fsdp = torch.load(runs / "weights-1.pt"), torch.load(runs / f"weights-{name}.pt")
    assert one.keys() == fsdp.keys()
    for k in fsdp:
        assert torch.allclose(one[k], fsdp[k], atol=1e-5), k


def test_lm_loss_under_fsdp_matches_one_process(runs):
    """The auxiliary LM term built after fully_shard reads the gathered tied embedding (not a stale shard)."""
    _fsdp(runs)
    one, fsdp = torch.load(runs / "weights-lm_loss-1.pt"), torch.load(runs / "weights-lm_loss-fsdp.pt")
    for k in one:
        assert torch.allclose(one[k], fsdp[k], atol=1e-5), k


def test_fsdp_checkpoints_are_sharded_one_file_per_rank(runs):
    """Each rank writes its own shards (DCP); rank 0's .pt holds the loop state and no tensors of the model."""
    status = _fsdp(runs)
    assert status["layout"] == [".metadata", "__0_0.distcp", "__1_0.distcp"]
    assert "weights" not in status["pt_keys"] and "optimizer" not in status["pt_keys"]
    assert {"format", "shards", "step", "queue", "rng_ranks", "best_step", "config"} <= set(status["pt_keys"])


def test_fsdp_resume_gives_the_uninterrupted_weights(runs):
    """Sharded checkpoints of both ranks; resumed from step 1 on 2 ranks (past orphaned step-2/3 shards and a
    half-written step-9 .tmp folder and file, which are removed, never read): the same weights."""
    status = _fsdp(runs)
    assert status["tmp_left"] == []
    a, b = torch.load(runs / "weights-fsdp-uninterrupted.pt"), torch.load(runs / "weights-fsdp-resumed.pt")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k


@pytest.fixture(scope="module")
def resharded(runs):
    """`runs`' 2-rank checkpoints up to step 2, resumed on 3 ranks (3 processes on the CPU)."""
    import torch.multiprocessing as mp

    from tests.train.ddp_worker import reshard_main

    _fsdp(runs)
    mp.spawn(reshard_main, args=(3, str(runs), _free_port()), nprocs=3, join=True)
    return runs


def test_fsdp_checkpoint_of_2_ranks_resumes_on_3(resharded):
    """DCP reads each new shard's pieces from the 2 ranks' files: weights, AdamW moments and the best
    weights (from an earlier step's checkpoint) are those of the uninterrupted 2-rank run."""
    status, info = _fsdp(resharded), json.loads((resharded / "reshard-3.json").read_text())
    assert info["steps"] == 3
    assert info["best_step"] == status["reshard_best_step"] < 3  # the final weights come from a sharded checkpoint
    assert info["layout"] == [".metadata", "__0_0.distcp", "__1_0.distcp", "__2_0.distcp"]
    a, b = torch.load(resharded / "weights-fsdp-reshard-uninterrupted.pt"), torch.load(resharded / "weights-fsdp-reshard-3.pt")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5), k
