"""Tiny mixture-of-experts models for the MoE tests: DeepSeek-V3 (sigmoid routing + bias) and Mixtral (softmax)."""

from __future__ import annotations

import torch

from tests.train.conftest import VOCAB


def deepseek_config(**kw):
    from transformers import DeepseekV3Config

    base = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, moe_intermediate_size=16, num_hidden_layers=2,
                num_attention_heads=2, num_key_value_heads=2, q_lora_rank=16, kv_lora_rank=16, qk_rope_head_dim=8,
                qk_nope_head_dim=8, v_head_dim=8, n_routed_experts=8, n_shared_experts=1, num_experts_per_tok=2,
                n_group=4, topk_group=2, first_k_dense_replace=1, max_position_embeddings=64, pad_token_id=0,
                bos_token_id=1, eos_token_id=2, tie_word_embeddings=True)
    return DeepseekV3Config(**{**base, **kw})


def deepseek(seed: int = 0, **kw):
    from transformers import DeepseekV3ForCausalLM

    torch.manual_seed(seed)
    return DeepseekV3ForCausalLM(deepseek_config(**kw))


def mixtral(seed: int = 0, **kw):
    from transformers import MixtralConfig, MixtralForCausalLM

    base = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2, max_position_embeddings=64,
                pad_token_id=0, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(seed)
    return MixtralForCausalLM(MixtralConfig(**{**base, **kw}))
