"""GRPO on CUDA (bf16 autocast, SDPA): rollouts, the loss batch and the updates all on the GPU. Skipped on CPU.
(Not yet run: no GPU was lent to this work. Batched = one-at-a-time generation is proven on the CPU, where the
kernels are deterministic; on a GPU, padded and unpadded SDPA may round differently.)"""

from __future__ import annotations

import math

import pytest
import torch

from tests.posttrain.grpo_resume_worker import PROMPTS, build, letter_e


@pytest.mark.gpu
def test_grpo_runs_on_cuda_in_bf16():
    from trainforge.posttrain.grpo_config import GrpoConfig
    from trainforge.posttrain.grpo_loop import encode_prompts, grpo_fit
    from trainforge.posttrain.rewards import Reward
    from trainforge.posttrain.rollouts import generate
    from trainforge.train.config import LoopConfig

    model, tok = build()
    model = model.to("cuda")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    prompts = encode_prompts([{"prompt": p} for p in PROMPTS], tok, "prompt", 64)
    res = grpo_fit(model, tok, prompts, LoopConfig(max_steps=2, lr=1e-2, precision="bf16"),
                   GrpoConfig(group_size=4, prompts_per_step=2, iterations=2, max_new_tokens=6, beta=0.05),
                   seed=0, rewards=[Reward("letter_e", letter_e)], device=torch.device("cuda"))
    assert res.updates == 4 and all(math.isfinite(h["loss"]) for h in res.history)
    assert any(not torch.equal(before[n], p) for n, p in model.named_parameters())
    # the rollouts ran where the model is: a sample decodes on the GPU without a host round trip per row
    assert next(model.parameters()).device.type == "cuda"
    out = generate(model, tok, prompts.ids[:3], 6, 1.0, 1.0, [1, 2, 3])
    assert all(1 <= len(c) <= 7 for c in out.completion_ids)
