"""Each image architecture builds from a tiny config, trains through the one loop, and its loss falls."""

from __future__ import annotations

import pytest
import torch

from trainforge.models.presets import resolve_model
from trainforge.tasks import ModelSpec
from trainforge.tasks.image_classification import ImageClassificationTask
from trainforge.train.config import TrainConfig
from trainforge.train.loop import fit
from trainforge.train.methods import apply_method

TINY = {  # preset: (image side, config overrides, lr) — the conv nets' batch norm wants a gentler step
    "vit-tiny": (16, dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, patch_size=4), 3e-3),
    "mobilenet-v2-tiny": (16, dict(depth_multiplier=0.25), 1e-3),
    "efficientnet-tiny": (32, dict(width_coefficient=0.1, depth_coefficient=0.2), 1e-3),
}


def _setup(preset: str, method: str, rows: list[dict]):
    size, overrides, lr = TINY[preset]
    cfg = TrainConfig(task="image_classification", model=preset, method=method, batch_size=len(rows), lr=lr,
                      max_steps=6, eval_every=6, dropout=0.0, weight_decay=0.0, schedule={"warmup_ratio": 0.0, "decay": "constant"},
                      image={"size": size, "augment": {"crop": 0.0, "rotate": 0.0, "noise": 0.0}},
                      lora={"r": 4, "alpha": 8, "dropout": 0.0}, freeze={"trainable_blocks": 1})
    task = ImageClassificationTask.for_training(cfg, rows, seed=0)
    processor = task.make_processor(cfg, resolve_model(preset), rows)
    train, val = task.encode(rows, processor), task.encode(rows[:20], processor, held_out=True)
    torch.manual_seed(0)
    model = task.build_model(ModelSpec(preset, 0, 0.0, overrides=overrides), processor)
    return cfg, task, train, val, model


@pytest.mark.parametrize("preset", list(TINY))
def test_each_architecture_trains_and_its_loss_falls(preset, digit_rows):
    cfg, task, train, val, model = _setup(preset, "full", digit_rows)
    assert train.positions == (17 if preset.startswith("vit") else 1)  # 16 patches + [CLS] at 16 px / 4 px patches
    setup = apply_method(model, cfg, 1, task)
    result = fit(setup.model, train, val, cfg, 0, seed=0, groups=setup.groups, task=task)
    losses = [h["loss"] for h in result.history]
    assert len(losses) == 6 and sum(losses[-2:]) / 2 < losses[0], losses
    assert 0.0 <= result.best["val_accuracy"] <= 1.0


@pytest.mark.parametrize("method", ["lora", "freeze"])
def test_lora_and_freeze_train_only_their_share(method, digit_rows):
    cfg, task, train, val, model = _setup("vit-tiny", method, digit_rows)
    setup = apply_method(model, cfg, 1, task)
    trainable = [n for n, p in setup.model.named_parameters() if p.requires_grad]
    if method == "lora":
        assert any("lora_A" in n for n in trainable) and any("classifier" in n for n in trainable)
        assert not any("fc1" in n and "lora" not in n for n in trainable)  # LoRA targets the attention only
    else:
        assert all("layers.0." not in n for n in trainable) and any("layers.1." in n for n in trainable)
    result = fit(setup.model, train, val, cfg, 0, seed=0, groups=setup.groups, task=task)
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < losses[0], losses
