"""torch.distributed under torchrun: DDP and FSDP2 (`fully_shard`), on CPUs (gloo) or one GPU per rank (NCCL).

`trainforge train CONFIG` is unchanged under `torchrun --nproc_per_node N` (or a multi-node
rendezvous): torchrun sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR, `init()` joins the group,
every rank builds the same length-bucketed batch order from the same seed and takes its slice of
each global batch (the job DistributedSampler does, kept compatible with bucketing), DDP averages
gradients, and only rank 0 logs and writes files.

    global batch (batch_size examples)  ──►  rank 0: idx[0::W]   rank 1: idx[1::W] …
    each rank: grad_accum micro-batches, gradient sync off until the last, then one all-reduce
               (DDP: no_sync(); FSDP2: set_requires_gradient_sync(False), one reduce-scatter)

One group, two backends: "cpu:gloo,cuda:nccl". GPU tensors (gradients, FSDP all-gathers) go through
NCCL; the small CPU tensors of `any_rank`, `sum_over_ranks` and the runner's `Ranks` go through gloo.
That matters while rank 0 runs a single-process stage (data, eval) for minutes: the followers wait
in a gloo all-reduce, under the configured timeout, instead of in an NCCL barrier that spins a GPU.
"""

from __future__ import annotations

import contextlib
import datetime
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


def init(timeout_minutes: float | None = None, device=None) -> DistInfo:
    """Join the process group torchrun describes; a plain `python` run is world size 1.

    device: where this rank trains (trainforge.device.resolve_device); a CUDA device (or None on a
    machine with CUDA) pins this rank to cuda:LOCAL_RANK and adds NCCL beside gloo; a CPU device
    (every test) keeps gloo alone. The first call creates the group; later calls return its ranks."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        use_cuda = torch.cuda.is_available() if device is None else torch.device(device).type == "cuda"
        kwargs = {"timeout": datetime.timedelta(minutes=timeout_minutes)} if timeout_minutes else {}
        if use_cuda:
            gpu = torch.device("cuda", local_rank % torch.cuda.device_count())
            torch.cuda.set_device(gpu)  # before any CUDA work: NCCL and the allocator use the current device
            dist.init_process_group("cpu:gloo,cuda:nccl", device_id=gpu, **kwargs)
        else:
            dist.init_process_group("gloo", **kwargs)
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank)


def wrap(model: torch.nn.Module, info: DistInfo, strategy: str, mixed_precision: str = "fp32") -> torch.nn.Module:
    """DDP, or FSDP2 `fully_shard` (each transformer block, then the root) when strategy == 'fsdp'.
    The model must already be on its device. With bf16/fp16, FSDP all-gathers and computes in that
    dtype and reduces gradients in fp32 (the sharded fp32 masters stay the optimizer's)."""
    if not info.active:
        return model
    if strategy == "fsdp":
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        from trainforge.train.methods import transformer_blocks

        policy = MixedPrecisionPolicy()
        if mixed_precision in ("bf16", "fp16"):
            policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16 if mixed_precision == "bf16" else torch.float16,
                                          reduce_dtype=torch.float32)
        for block in transformer_blocks(model):
            fully_shard(block, mp_policy=policy)
        fully_shard(model, mp_policy=policy)
        return model
    from torch.nn.parallel import DistributedDataParallel

    device = next(model.parameters()).device
    return DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)


@contextlib.contextmanager
def gradient_sync(net: torch.nn.Module, enabled: bool):
    """Gradients reduced across ranks (enabled) or only accumulated locally, for the forward AND backward
    inside. DDP decides at forward time (`no_sync()`); FSDP2 modules have no `no_sync` and decide at
    backward time (`set_requires_gradient_sync`), so the backward must run inside this block."""
    inner = getattr(net, "_orig_mod", net)  # under torch.compile
    if enabled:
        yield
    elif hasattr(inner, "no_sync"):
        with inner.no_sync():
            yield
    elif hasattr(inner, "set_requires_gradient_sync"):
        inner.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            inner.set_requires_gradient_sync(True)
    else:
        yield


def is_fsdp(module: torch.nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(getattr(module, "_orig_mod", module), FSDPModule)


def any_rank(flag: bool, info: DistInfo) -> bool:
    """True when `flag` is true on any rank (so every rank takes the same branch and none hangs).
    A CPU tensor: it goes through gloo even when the group also has NCCL."""
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
    """Every rank meets here, through gloo (a CPU all-reduce), under the group's timeout."""
    if info.active:
        import torch.distributed as dist

        dist.all_reduce(torch.zeros(1))


def gather_objects(obj, info: DistInfo) -> list:
    """Each rank's `obj`, in rank order, on every rank (pickled through gloo)."""
    if not info.active:
        return [obj]
    import torch.distributed as dist

    out = [None] * info.world
    dist.all_gather_object(out, obj)
    return out
