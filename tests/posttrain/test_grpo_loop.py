"""The GRPO loop with LoRA and a KL term: the reference is the policy with its adapter off (no second model),
only the adapter trains, and the first update's KL is 0 (the policy starts at the reference)."""

from __future__ import annotations

import pytest
import torch

from tests.posttrain.grpo_resume_worker import PROMPTS, build, letter_e


def test_lora_policy_uses_its_adapter_off_model_as_the_reference():
    from peft import LoraConfig, get_peft_model

    from trainforge.posttrain.grpo_config import GrpoConfig
    from trainforge.posttrain.grpo_loop import encode_prompts, grpo_fit, reference_for
    from trainforge.posttrain.rewards import Reward
    from trainforge.train.config import LoopConfig

    model, tok = build()
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0))
    assert reference_for(model, 0.1) is model and reference_for(model, 0.0) is None
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    prompts = encode_prompts([{"prompt": p} for p in PROMPTS], tok, "prompt", 64)
    res = grpo_fit(model, tok, prompts, LoopConfig(max_steps=3, lr=2e-2, log_every=1000),
                   GrpoConfig(group_size=4, prompts_per_step=2, max_new_tokens=6, beta=0.1), seed=0,
                   rewards=[Reward("letter_e", letter_e)])
    assert res.history[0]["kl"] == pytest.approx(0.0, abs=1e-7)  # LoRA's B starts at 0: policy = reference
    assert res.history[-1]["kl"] > 0  # after updates the adapter moved the policy away
    for n, p in model.named_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n]), n
    assert 0 <= res.history[-1]["generation_share"] <= 1
