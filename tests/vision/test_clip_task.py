"""CLIP and Chinese-CLIP build from presets, train contrastively through the one loop (loss falls), and evaluate."""

from __future__ import annotations

import pytest
import torch

from trainforge.models.presets import resolve_model
from trainforge.tasks import ModelSpec
from trainforge.tasks.clip import ClipTask
from trainforge.train.config import TrainConfig
from trainforge.train.loop import fit
from trainforge.train.methods import apply_method


@pytest.fixture(scope="module")
def caption_rows() -> list[dict]:
    from trainforge.vision.digits import digits_caption_records

    rows = []
    for r in digits_caption_records():
        rows.append({"id": r["id"], "image": r["image"], "text": r["text"], "label": r["label"]})
        if len(rows) == 40:
            break
    return rows


@pytest.mark.parametrize("preset", ["clip-tiny", "chinese-clip-tiny"])
def test_clip_trains_contrastively_and_its_loss_falls(preset, caption_rows):
    cfg = TrainConfig(task="clip", model=preset, method="full", batch_size=len(caption_rows), lr=2e-3, max_steps=5,
                      eval_every=5, weight_decay=0.0, max_length=16, schedule={"warmup_ratio": 0.0, "decay": "constant"},
                      image={"size": 16, "augment": {"crop": 0.0, "rotate": 0.0, "noise": 0.0}})
    task = ClipTask.for_training(cfg, caption_rows, seed=0)
    processor = task.make_processor(cfg, resolve_model(preset), caption_rows)
    train, val = task.encode(caption_rows, processor), task.encode(caption_rows[:20], processor, held_out=True)
    torch.manual_seed(0)
    model = task.build_model(ModelSpec(preset, 16, 0.0), processor)
    assert model.config.text_config.eos_token_id != 2  # CLIP reads id 2 as "pool the highest id" (families.py)
    setup = apply_method(model, cfg, 1, task)
    result = fit(setup.model, train, val, cfg, processor.pad_token_id, seed=0, groups=setup.groups, task=task)
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < losses[0], losses
    assert 0.0 <= result.best["val_i2t_recall_at_1"] <= 1.0
