"""The AST classifier builds from a tiny config, trains through the one loop (fit), its loss falls, and the
eval writes the model beside the majority-class and MFCC + LR baselines."""

from __future__ import annotations

import json

import pytest
import torch

from trainforge.models.presets import resolve_model
from trainforge.tasks import TASKS, ModelSpec
from trainforge.tasks.audio_classification import AudioClassificationTask
from trainforge.train.config import TrainConfig
from trainforge.train.loop import fit
from trainforge.train.methods import apply_method

TINY = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)


def _setup(rows, method="full", noise=0.0):
    cfg = TrainConfig(task="audio_classification", model="ast-tiny", method=method, batch_size=len(rows), lr=3e-3,
                      max_steps=6, eval_every=6, dropout=0.0, weight_decay=0.0,
                      schedule={"warmup_ratio": 0.0, "decay": "constant"},
                      audio={"num_mel_bins": 32, "max_frames": 40, "noise": noise}, lora={"r": 4, "alpha": 8, "dropout": 0.0})
    task = AudioClassificationTask.for_training(cfg, rows, seed=0)
    fe = task.make_processor(cfg, resolve_model("ast-tiny"), rows)
    train, val = task.encode(rows, fe), task.encode(rows[:12], fe, held_out=True)
    torch.manual_seed(0)
    model = task.build_model(ModelSpec("ast-tiny", 0, 0.0, overrides=TINY), fe)
    return cfg, task, train, val, model, fe


@pytest.mark.parametrize("method,noise", [("full", 0.0), ("lora", 0.05)])
def test_ast_trains_and_its_loss_falls(method, noise, tone_rows):
    cfg, task, train, val, model, _ = _setup(tone_rows, method, noise)
    assert TASKS["audio_classification"] is AudioClassificationTask
    assert train.positions == ((32 - 16) // 10 + 1) * ((40 - 16) // 10 + 1) + 2  # 2 × 3 patches + [CLS] + distillation
    assert (train.features is None) == (noise > 0)  # noisy training clips: log-mels drawn per batch
    setup = apply_method(model, cfg, 1, task)
    if method == "lora":
        trainable = [n for n, p in setup.model.named_parameters() if p.requires_grad]
        assert any("lora_A" in n for n in trainable) and not any("fc1" in n and "lora" not in n for n in trainable)
    result = fit(setup.model, train, val, cfg, 0, seed=0, groups=setup.groups, task=task)
    losses = [h["loss"] for h in result.history]
    assert len(losses) == 6 and sum(losses[-2:]) / 2 < losses[0], losses
    assert 0.0 <= result.best["val_accuracy"] <= 1.0


def test_saved_model_evaluates_beside_both_baselines(tone_rows, tmp_path):
    from trainforge.evaluate.config import EvalConfig
    from trainforge.tasks import EvalJob, task_for, write_model_info

    cfg, task, train, val, model, fe = _setup(tone_rows)
    fit(model, train, val, cfg, 0, seed=0, task=task)
    model_dir, out = tmp_path / "model", tmp_path / "eval"
    out.mkdir()
    model.save_pretrained(model_dir)
    fe.save_pretrained(model_dir)
    write_model_info(model_dir, task.model_info(ModelSpec("ast-tiny", 0, 0.0), model, "full", False))
    loaded, info = task_for(model_dir)
    assert isinstance(loaded, AudioClassificationTask) and loaded.labels == task.labels
    job = EvalJob(model_dir, info, tone_rows[:12], tone_rows[12:], EvalConfig(split="test", bootstrap_samples=50), 0, out,
                  tmp_path / "test.jsonl")
    flat = loaded.evaluate(job)
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["baselines"]) == {"majority", "mfcc-lr"} and metrics["baseline"]["name"] == "mfcc-lr"
    assert metrics["baselines"]["majority"]["accuracy"] == pytest.approx(4 / 12, abs=1e-4)  # 4 of each label in the 12
    assert metrics["baselines"]["mfcc-lr"]["accuracy"] == 1.0  # three pure tones: trivially separable
    assert 0 <= metrics["paired"]["mcnemar_p"] <= 1 and flat["majority_accuracy"] == pytest.approx(4 / 12, abs=1e-4)
    assert (out / "samples.png").stat().st_size > 0 and (out / "confusion_matrix.png").is_file()
    assert len((out / "predictions.jsonl").read_text().splitlines()) == 12

