"""train.compile=true: torch.compile with the default inductor backend (C++ kernels built with gcc on CPU).

Every example has the same length, so each compiled run builds one forward/backward graph (varying
lengths would add recompiles for dynamic shapes and triple the test's time without testing more of
our code). The eager and compiled runs share one fixture: inductor's first compile is most of this
file's time (~25 s cold on one thread; its on-disk cache makes later runs faster).

Why compiled ≠ eager bit for bit, and the tolerance: inductor fuses ops (RMSNorm, softmax, the
AdamW update is ours and stays eager) and reorders float32 reductions, so single ops differ in the
last bits (~1e-7 relative). Adam divides by sqrt(v), which amplifies those differences for
near-zero gradients, and 20 steps compound them: measured 4e-5 on weights, 3e-4 on logits. The
tolerances below (1e-3 / 5e-3) sit ~25x above that and ~100x below what training moves (> 0.1):
a compiled run that trained a different model, or skipped steps, fails them.
"""

from __future__ import annotations

import copy
import random

import pytest
import torch

from tests.train.conftest import PAD, SIGNAL, VOCAB, llama_config
from trainforge.train import checkpoint
from trainforge.train.config import LoopConfig
from trainforge.train.loop import Encoded, fit, predict_logits

STEPS = 20


def fixed_length_classification(n: int = 64, length: int = 10, seed: int = 0) -> Encoded:
    rng = random.Random(seed)
    ids, labels = [], []
    for i in range(n):
        seq = [rng.randrange(8, VOCAB) for _ in range(length)]
        if i % 2:
            seq[rng.randrange(length)] = SIGNAL
        ids.append([1] + seq + [2])
        labels.append(i % 2)
    return Encoded(ids, labels)


def _cfg(**kw) -> LoopConfig:
    return LoopConfig(max_steps=STEPS, batch_size=16, lr=1e-2, weight_decay=0.01, eval_every=1000, log_every=1000,
                      checkpoint_every=10, schedule={"warmup_ratio": 0.0, "decay": "constant"}, **kw)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(initial, eager, compiled) models and the compiled run's result, same seed and data."""
    from torch._dynamo.utils import counters
    from transformers import LlamaForSequenceClassification

    torch.set_num_threads(1)
    torch.manual_seed(0)
    initial = LlamaForSequenceClassification(llama_config()).eval()
    eager, compiled = copy.deepcopy(initial), copy.deepcopy(initial)
    data = fixed_length_classification()
    eager_result = fit(eager, data, None, _cfg(), PAD, seed=0)
    torch._dynamo.reset()
    counters.clear()
    compiled_result = fit(compiled, data, None, _cfg(compile=True), PAD, seed=0,
                          checkpoint_dir=tmp_path_factory.mktemp("compiled") / "checkpoints")
    graphs = counters["stats"]["unique_graphs"]
    return initial, eager, compiled, eager_result, compiled_result, graphs, data


def test_compiled_training_matches_eager_within_float_reordering(runs):
    initial, eager, compiled, eager_result, compiled_result, graphs, data = runs
    assert graphs >= 1  # dynamo really captured and compiled the model (no silent eager fallback)
    losses = [h["loss"] for h in compiled_result.history]
    assert len(losses) == STEPS and sum(losses[-4:]) / 4 < 0.75 * sum(losses[:4]) / 4  # it learns
    assert losses == pytest.approx([h["loss"] for h in eager_result.history], abs=1e-3)
    moved = max((a - b).abs().max().item() for a, b in zip(initial.parameters(), compiled.parameters()))
    assert moved > 0.1
    for (name, a), b in zip(eager.named_parameters(), compiled.parameters()):
        assert torch.allclose(a, b, atol=1e-3), name
    assert torch.allclose(predict_logits(eager, data, 64, PAD), predict_logits(compiled, data, 64, PAD), atol=5e-3)


def test_compiled_model_saves_without_orig_mod_prefixes(runs, tmp_path):
    from transformers import AutoModelForSequenceClassification

    from trainforge.models.tokenizer import train_bpe
    from trainforge.train.config import TrainConfig
    from trainforge.train.stage import save_model

    _, _, compiled, _, _, _, data = runs
    tokenizer = train_bpe(["好评", "差评"], 300, 1, 16, family="llama")
    save_model(compiled, False, TrainConfig(compile=True), tokenizer, tmp_path / "model", tmp_path / "adapter")
    from safetensors import safe_open

    with safe_open(tmp_path / "model" / "model.safetensors", "pt") as f:
        assert not [k for k in f.keys() if "_orig_mod" in k]
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "model").eval()
    assert torch.equal(predict_logits(loaded, data, 64, PAD), predict_logits(compiled, data, 64, PAD))


class _Crash(Exception):
    pass


def test_compiled_run_resumes_from_its_checkpoint_to_the_same_weights(runs, tmp_path, monkeypatch):
    """Crash right after the step-10 checkpoint, resume with compile on: the uninterrupted compiled run's weights."""
    initial, _, compiled, _, compiled_result, _, data = runs
    save = checkpoint.save_checkpoint

    def save_then_crash(folder, step, state, *args):
        path = save(folder, step, state, *args)
        assert not [k for k in state["weights"] if "_orig_mod" in k]  # keys of the model, not of the compiled wrapper
        if step == 10:
            raise _Crash
        return path

    monkeypatch.setattr(checkpoint, "save_checkpoint", save_then_crash)
    with pytest.raises(_Crash):
        fit(copy.deepcopy(initial), data, None, _cfg(compile=True), PAD, seed=0, checkpoint_dir=tmp_path)
    monkeypatch.setattr(checkpoint, "save_checkpoint", save)
    resumed = copy.deepcopy(initial)
    result = fit(resumed, data, None, _cfg(compile=True, resume=True), PAD, seed=0, checkpoint_dir=tmp_path)
    assert result.steps == STEPS and [h["loss"] for h in result.history] == [h["loss"] for h in compiled_result.history]
    for (name, a), b in zip(compiled.named_parameters(), resumed.parameters()):
        assert torch.equal(a, b), name
