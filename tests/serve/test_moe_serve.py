"""A DeepSeek-V3 mixture-of-experts model (MLA, routed + shared experts) through the OpenAI-compatible server."""

from __future__ import annotations

import pytest

from tests.serve.servers import start_server
from tests.serve.tiny_models import CHAT_TEMPLATE, tiny_tokenizer


@pytest.fixture(scope="module")
def deepseek_dir(tmp_path_factory):
    import torch
    from transformers import DeepseekV3Config, DeepseekV3ForCausalLM

    torch.manual_seed(0)
    tokenizer = tiny_tokenizer()
    tokenizer.chat_template = CHAT_TEMPLATE
    config = DeepseekV3Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, moe_intermediate_size=16,
                              num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2, q_lora_rank=16,
                              kv_lora_rank=16, qk_rope_head_dim=8, qk_nope_head_dim=8, v_head_dim=8, n_routed_experts=8,
                              n_shared_experts=1, num_experts_per_tok=2, n_group=4, topk_group=2,
                              first_k_dense_replace=1, max_position_embeddings=512, initializer_range=0.2,
                              pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                              eos_token_id=tokenizer.eos_token_id)
    model = DeepseekV3ForCausalLM(config).eval()
    with torch.no_grad():  # a trained-looking router bias, so serving must load and use it
        model.model.layers[1].mlp.gate.e_score_correction_bias.copy_(torch.linspace(-0.2, 0.2, 8))
        model.lm_head.weight[tokenizer.eos_token_id] = 0.0  # logit 0 never beats the max of 400 random ones: no early stop
    path = tmp_path_factory.mktemp("models") / "deepseek-tiny"
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path


def test_batched_greedy_decoding_matches_generate(deepseek_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainforge.serve.batching import GenRequest, generate_batch
    from trainforge.serve.engine import load_engine

    engine = load_engine(deepseek_dir)
    prompts = ["hello", "the quick brown fox jumps over", "房间很干净"]
    got: dict[int, list] = {i: [] for i in range(len(prompts))}
    generate_batch(engine, [GenRequest(engine.encode(p), max_tokens=8, temperature=0, emit=got[i].append)
                            for i, p in enumerate(prompts)])
    model = AutoModelForCausalLM.from_pretrained(deepseek_dir).eval()
    assert float(model.model.layers[1].mlp.gate.e_score_correction_bias[0]) == pytest.approx(-0.2)
    tok = AutoTokenizer.from_pretrained(deepseek_dir)
    for i, p in enumerate(prompts):
        ids = tok(p, return_tensors="pt")
        ref = model.generate(**ids, max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id)[0, ids["input_ids"].shape[1]:]
        assert ref.numel() == 8
        assert "".join(e[1] for e in got[i] if e[0] == "token") == tok.decode(ref, skip_special_tokens=True)


def test_openai_completion_and_chat(deepseek_dir):
    import openai

    server, _ = start_server(str(deepseek_dir))
    try:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=60)
        r = client.completions.create(model=deepseek_dir.name, prompt="hello world", max_tokens=6, temperature=0)
        assert r.usage.completion_tokens == 6 and r.choices[0].finish_reason == "length"
        chat = client.chat.completions.create(model=deepseek_dir.name, messages=[{"role": "user", "content": "你好"}],
                                              max_tokens=5, temperature=0)
        assert chat.choices[0].message.role == "assistant"
    finally:
        server.stop()
