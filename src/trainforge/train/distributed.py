"""torch.distributed under torchrun: DDP (gloo on CPU, NCCL on GPU) and FSDP2 (`fully_shard`).

`trainforge train CONFIG` is unchanged under `torchrun --nproc_per_node N` (or a multi-node
rendezvous): torchrun sets RANK / WORLD_SIZE / MASTER_ADDR, `init()` joins the group, every rank
builds the same length-bucketed batch order from the same seed and takes its slice of each global
batch (the job DistributedSampler does, kept compatible with bucketing), DDP averages gradients,
and only rank 0 logs, checkpoints and writes files.

    global batch (batch_size examples)  ──►  rank 0: idx[0::W]   rank 1: idx[1::W] …
    each rank: grad_accum micro-batches, no_sync() until the last, then one all-reduce
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def init() -> DistInfo:
    """Join the process group torchrun describes; a plain `python` run is world size 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def wrap(model: torch.nn.Module, info: DistInfo, strategy: str) -> torch.nn.Module:
    """DDP, or FSDP2 `fully_shard` (each transformer block, then the root) when strategy == 'fsdp'."""
    if not info.active:
        return model
    if strategy == "fsdp":
        from torch.distributed.fsdp import fully_shard

        from trainforge.train.methods import transformer_blocks

        for block in transformer_blocks(model):
            fully_shard(block)
        fully_shard(model)
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model)


def any_rank(flag: bool, info: DistInfo) -> bool:
    """True when `flag` is true on any rank (so every rank takes the same branch and none hangs)."""
    if not info.active:
        return flag
    import torch.distributed as dist

    t = torch.tensor([1.0 if flag else 0.0])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def sum_over_ranks(value: float, info: DistInfo) -> float:
    if not info.active:
        return value
    import torch.distributed as dist

    t = torch.tensor([float(value)], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t.item())


def barrier(info: DistInfo) -> None:
    if info.active:
        import torch.distributed as dist

        dist.barrier()
