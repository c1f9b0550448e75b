"""Each method trains a tiny model: the loss falls and only the parameters it should train change."""

from __future__ import annotations

import pytest
import torch

from tests.train.conftest import PAD, make_classification, make_lm
from trainforge.train.config import LoopConfig, TrainConfig
from trainforge.train.loop import fit
from trainforge.train.methods import UnfreezePlan, apply_method, layer_groups


def _loop(**kw) -> LoopConfig:
    base = dict(max_steps=30, batch_size=16, lr=1e-2, weight_decay=0.0, eval_every=1000, log_every=1000,
                schedule={"warmup_ratio": 0.0, "decay": "constant"})
    base.update(kw)
    return LoopConfig(**base)


def _train(model, cfg: TrainConfig, data, steps=30, lr=1e-2):
    setup = apply_method(model, cfg, steps_per_epoch=4)
    before = {n: p.detach().clone() for n, p in setup.model.named_parameters()}
    result = fit(setup.model, data, None, _loop(max_steps=steps, lr=lr), PAD, seed=0, groups=setup.groups, unfreeze=setup.unfreeze)
    changed = {n for n, p in setup.model.named_parameters() if not torch.equal(before[n], p.detach())}
    first = sum(h["loss"] for h in result.history[:3]) / 3
    last = sum(h["loss"] for h in result.history[-3:]) / 3
    return setup, changed, first, last


def test_full_trains_everything(llama_classifier):
    _, changed, first, last = _train(llama_classifier, TrainConfig(method="full"), make_classification())
    assert last < first
    assert changed == {n for n, _ in llama_classifier.named_parameters()}


def test_full_with_discriminative_lrs_scales_each_group_and_trains_everything(llama_classifier):
    cfg = TrainConfig(method="full", layer_lr_decay=2.0)
    setup = apply_method(llama_classifier, cfg, steps_per_epoch=4)
    assert [scale for _, scale in setup.groups] == [1.0, 0.5, 0.25, 0.125]  # head, block 1, block 0, embeddings
    assert {n for n, _ in setup.groups[0][0]} >= {"score.weight", "model.norm.weight"}
    assert {n for n, _ in setup.groups[-1][0]} == {"model.embed_tokens.weight"}
    _, changed, first, last = _train(llama_classifier, cfg, make_classification())
    assert last < first
    assert changed == {n for n, _ in llama_classifier.named_parameters()}


def test_freeze_trains_top_blocks_and_head_only(llama_classifier):
    cfg = TrainConfig(method="freeze", freeze={"trainable_blocks": 1})
    _, changed, first, last = _train(llama_classifier, cfg, make_classification())
    assert last < first
    assert changed and all(n.startswith(("model.layers.1.", "score", "model.norm")) for n in changed), changed
    assert any(n.startswith("model.layers.1.") for n in changed)
    assert "model.embed_tokens.weight" not in changed


def test_layer_groups_cover_every_parameter_bottom_up(llama_classifier, bert_classifier):
    for model, first_block in ((llama_classifier, "model.layers.0."), (bert_classifier, "bert.encoder.layer.0.")):
        groups = layer_groups(model)
        assert [g for g, _ in groups] == ["embeddings", "block 0", "block 1", "head"]
        assert all(n.startswith(first_block) for n, _ in groups[1][1])
        assert sum(len(ps) for _, ps in groups) == len(list(model.parameters()))


def test_progressive_unfreezing_adds_one_group_every_k_steps(llama_classifier):
    cfg = TrainConfig(method="unfreeze", freeze={"unfreeze_every": 5, "lr_decay": 2.0})
    setup = apply_method(llama_classifier, cfg, steps_per_epoch=4)
    plan: UnfreezePlan = setup.unfreeze
    trainable = lambda: {n for n, p in llama_classifier.named_parameters() if p.requires_grad}  # noqa: E731
    assert plan.apply(0) is False and all(n.startswith(("score", "model.norm")) for n in trainable())
    assert plan.apply(5) and any(n.startswith("model.layers.1.") for n in trainable())
    assert not any(n.startswith("model.layers.0.") for n in trainable())
    plan.apply(15)
    assert trainable() == {n for n, _ in llama_classifier.named_parameters()}
    # discriminative learning rates: lr / decay^depth from the head down
    assert [scale for _, scale in setup.groups] == [1.0, 0.5, 0.25, 0.125]


def test_unfreeze_trains_and_lower_groups_wait_their_turn(llama_classifier):
    cfg = TrainConfig(method="unfreeze", freeze={"unfreeze_every": 100})
    _, changed, first, last = _train(llama_classifier, cfg, make_classification(), steps=30, lr=3e-2)
    assert last < first
    assert changed and all(n.startswith(("score", "model.norm")) for n in changed)  # 30 < 100: only the head moved


def test_unfreeze_epochs_unit(llama_classifier):
    cfg = TrainConfig(method="unfreeze", freeze={"unfreeze_every": 2, "unfreeze_unit": "epochs"})
    assert apply_method(llama_classifier, cfg, steps_per_epoch=7).unfreeze.every == 14


@pytest.mark.parametrize("dora", [False, True])
def test_lora_trains_adapters_and_head_only(llama_classifier, dora):
    cfg = TrainConfig(method="lora", lora={"r": 4, "alpha": 8, "dropout": 0.0, "dora": dora})
    setup, changed, first, last = _train(llama_classifier, cfg, make_classification())
    assert last < first
    assert changed and all(("lora_" in n) or ("score" in n) for n in changed), changed
    assert any("q_proj.lora_A" in n for n in changed) and any("v_proj.lora_B" in n for n in changed)
    assert any("lora_magnitude_vector" in n for n in changed) == dora


def test_fresh_lora_gives_the_base_models_outputs_and_merge_equals_unmerged(llama_classifier, tmp_path):
    from peft import PeftModel

    batch = torch.tensor([[1, 9, 12, 7, 2], [1, 30, 31, 33, 2]])
    llama_classifier.eval()
    with torch.no_grad():
        base_out = llama_classifier(input_ids=batch).logits.clone()
    llama_classifier.save_pretrained(tmp_path / "base")
    setup = apply_method(llama_classifier, TrainConfig(method="lora", lora={"r": 4, "dropout": 0.0}), 4)
    peft_model = setup.model.eval()
    with torch.no_grad():
        assert torch.allclose(peft_model(input_ids=batch).logits, base_out, atol=1e-6)  # B = 0 at init
        for n, p in peft_model.named_parameters():  # move the adapter off its identity
            if "lora_B" in n or "score" in n:
                p.add_(torch.randn_like(p) * 0.1)
        unmerged = peft_model(input_ids=batch).logits.clone()
    assert not torch.allclose(unmerged, base_out, atol=1e-4)
    peft_model.save_pretrained(tmp_path / "adapter")

    from transformers import LlamaForSequenceClassification

    reloaded = PeftModel.from_pretrained(LlamaForSequenceClassification.from_pretrained(tmp_path / "base"), tmp_path / "adapter").eval()
    with torch.no_grad():
        assert torch.allclose(reloaded(input_ids=batch).logits, unmerged, atol=1e-6)
        merged = peft_model.merge_and_unload().eval()
        assert torch.allclose(merged(input_ids=batch).logits, unmerged, atol=1e-5)


@pytest.mark.parametrize("method", ["prompt", "prefix"])
def test_prompt_and_prefix_tuning_train_virtual_tokens_only(llama_lm, method, tmp_path):
    from peft import PeftModel
    from transformers import LlamaForCausalLM

    llama_lm.save_pretrained(tmp_path / "base")
    cfg = TrainConfig(task="sft", method=method, prompt={"virtual_tokens": 4})
    setup, changed, first, last = _train(llama_lm, cfg, make_lm(), steps=25, lr=3e-2)
    assert last < first
    assert changed and all("prompt_encoder" in n for n in changed), changed
    setup.model.save_pretrained(tmp_path / "adapter")
    reloaded = PeftModel.from_pretrained(LlamaForCausalLM.from_pretrained(tmp_path / "base"), tmp_path / "adapter").eval()
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        assert torch.allclose(reloaded(input_ids=ids).logits, setup.model.eval()(input_ids=ids).logits, atol=1e-6)


def test_bert_lora_targets_detected(bert_classifier):
    from trainforge.train.methods import lora_targets

    assert set(lora_targets(bert_classifier)) == {"query", "value"}
