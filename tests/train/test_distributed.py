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


def test_fsdp_matches_one_process_where_supported(runs):
    status = json.loads((runs / "status.json").read_text())
    if status["fsdp"] != "ok":
        pytest.skip(f"FSDP fully_shard on CPU/gloo: {status['fsdp']}")
    one, fsdp = torch.load(runs / "weights-1.pt"), torch.load(runs / "weights-fsdp.pt")
    for k in fsdp:
        assert torch.allclose(one[k], fsdp[k], atol=1e-5), k
