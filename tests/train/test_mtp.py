"""Multi-token prediction (train/mtp.py): it trains inside the loop, and the exported model is plain transformers."""

from __future__ import annotations

import torch

from tests.train.conftest import PAD, make_lm
from tests.train.moe_models import deepseek
from trainforge.tasks import CausalLMTask
from trainforge.train import mtp
from trainforge.train.config import LoopConfig
from trainforge.train.loop import collate, fit


def test_mtp_trains_and_the_exported_model_loads_with_the_same_next_token_logits(tmp_path):
    from transformers import AutoModelForCausalLM

    model = deepseek()
    heads = mtp.attach(model, depth=2)
    before = {n: p.clone() for n, p in heads.named_parameters()}
    task = CausalLMTask(16)
    cfg = LoopConfig(max_steps=3, batch_size=8, lr=1e-2, log_every=1000, schedule={"warmup_ratio": 0.0})
    fit(model, make_lm(16), None, cfg, PAD, seed=0, task=task, loss_fn_factory=lambda net: mtp.loss_fn(task.loss, 0.3))
    assert all(not torch.equal(before[n], p) for n, p in heads.named_parameters() if n.endswith("proj.weight"))

    batch = collate(make_lm(4, seed=2), [0, 1, 2, 3], PAD)
    model.eval()
    with torch.no_grad():
        want = model(input_ids=batch["input_ids"]).logits
    mtp.detach(model)
    model.save_pretrained(tmp_path / "exported")
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "exported").eval()
    from safetensors.torch import load_file

    assert not any("mtp" in k for k in load_file(tmp_path / "exported" / "model.safetensors"))
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=batch["input_ids"]).logits, want)


def test_mtp_loss_is_the_next_token_loss_plus_lambda_times_the_depth_mean():
    """With depth 1 the extra term is one module's cross-entropy on t_{i+2}, computed here by hand."""
    model = deepseek()
    heads = mtp.attach(model, depth=1)
    batch = collate(make_lm(2), [0, 1], PAD)

    class W:
        examples, tokens = 1.0, 10.0

    base = lambda net, b, w: net(**b, num_items_in_batch=w.tokens).loss  # noqa: E731
    model.eval()
    total = mtp.loss_fn(base, 0.5)(model, batch, W)
    seen = {}
    hook = model.model.layers[-1].register_forward_hook(lambda m, a, out: seen.__setitem__("h", out))
    main = base(model, batch, W)
    hook.remove()
    d = heads.depths[0]
    ids = batch["input_ids"]
    x = d.proj(torch.cat([d.hnorm(seen["h"][:, :-1]), d.enorm(model.model.embed_tokens(ids[:, 1:]))], -1))
    pos = torch.arange(x.shape[1]).unsqueeze(0)
    from transformers.masking_utils import create_causal_mask

    mask = create_causal_mask(config=model.config, inputs_embeds=x, attention_mask=None, cache=None, position_ids=pos)
    h = d.block(x, attention_mask=mask, position_ids=pos, position_embeddings=model.model.rotary_emb(x, pos))
    logits = model.lm_head(d.norm(h[:, :-1]))
    ce = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 2:].reshape(-1), reduction="sum")
    assert torch.allclose(total, main + 0.5 * ce / 10.0, atol=1e-5)
