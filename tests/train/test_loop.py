"""The loop's guards and knobs: non-finite losses, accumulation, memory fitting, early stopping, precision."""

from __future__ import annotations

import pytest
import torch

from tests.train.conftest import PAD, make_classification, make_lm, make_sft
from trainforge.train.config import LoopConfig
from trainforge.train.loop import NonFiniteLoss, collate, evaluate, fit


def _cfg(**kw) -> LoopConfig:
    base = dict(max_steps=12, batch_size=16, lr=1e-2, weight_decay=0.01, eval_every=1000, log_every=1000,
                schedule={"warmup_ratio": 0.0, "decay": "constant"})
    base.update(kw)
    return LoopConfig(**base)


class _PoisonLoss:
    """Forward hook: a NaN loss on the listed calls (counted from 0), a normal one otherwise."""

    def __init__(self, bad_calls):
        self.bad, self.calls = set(bad_calls), 0

    def __call__(self, module, args, output):
        if self.calls in self.bad:
            output.loss = output.loss * float("nan")
        self.calls += 1
        return output


def test_nonfinite_loss_is_skipped_and_counted(llama_classifier):
    llama_classifier.register_forward_hook(_PoisonLoss({2, 5}))
    before = {n: p.detach().clone() for n, p in llama_classifier.named_parameters()}
    result = fit(llama_classifier, make_classification(), None, _cfg(max_steps=8), PAD, seed=0)
    assert result.nonfinite_skipped == 2
    assert len(result.history) == 6  # the two poisoned steps left no update and no history row
    assert all(torch.isfinite(p).all() for p in llama_classifier.parameters())
    assert any(not torch.equal(before[n], p) for n, p in llama_classifier.named_parameters())


def test_nonfinite_loss_stops_after_k_in_a_row_with_a_clear_message(llama_classifier):
    llama_classifier.register_forward_hook(_PoisonLoss(range(3, 100)))
    with pytest.raises(NonFiniteLoss, match=r"NaN/inf for 3 steps in a row.*Lower train.lr"):
        fit(llama_classifier, make_classification(), None, _cfg(max_steps=20, max_nonfinite=3), PAD, seed=0)


def test_gradient_accumulation_matches_one_big_batch(llama_classifier):
    import copy

    other = copy.deepcopy(llama_classifier)
    data = make_classification()
    fit(llama_classifier, data, None, _cfg(max_steps=4), PAD, seed=0)
    result = fit(other, data, None, _cfg(max_steps=4, grad_accum=4), PAD, seed=0)
    assert result.micro_batch == 4 and result.grad_accum == 4
    for (n, a), (_, b) in zip(llama_classifier.named_parameters(), other.named_parameters()):
        assert torch.allclose(a, b, atol=1e-5), n


def _lm_loss_fn(model):
    from trainforge.train.lm_loss import auxiliary_loss

    return auxiliary_loss(1.0, model.get_input_embeddings().weight)  # tied embedding, as the llama presets


@pytest.mark.parametrize("task", ["sft", "lm_loss"])
def test_accumulation_weights_token_losses_by_the_whole_batch(llama_lm, llama_classifier, task):
    """Micro-batches with different numbers of target tokens: the loss is a mean over the global batch's
    tokens (not a mean of micro-batch means), so 4 micro-batches train exactly like one big batch."""
    import copy

    model, data = (llama_lm, make_sft()) if task == "sft" else (llama_classifier, make_classification())
    # the check can fail: here a mean of per-micro-batch token means is not the global batch's token mean
    batch = collate(data, list(range(16)), PAD)
    targets = batch["labels"][:, 1:] != -100 if task == "sft" else (batch["attention_mask"][:, 1:] * batch["attention_mask"][:, :-1]).bool()
    counts = targets.view(4, 4, -1).sum(dim=(1, 2)).float()
    assert counts.min() != counts.max()

    other, start = copy.deepcopy(model), copy.deepcopy(model)
    one = fit(model, data, None, _cfg(max_steps=4), PAD, seed=0, loss_fn=_lm_loss_fn(model) if task == "lm_loss" else None)
    four = fit(other, data, None, _cfg(max_steps=4, grad_accum=4), PAD, seed=0,
               loss_fn=_lm_loss_fn(other) if task == "lm_loss" else None)
    assert four.micro_batch == 4 and four.grad_accum == 4
    assert one.steps == 4 and not torch.equal(model.model.norm.weight, start.model.norm.weight)
    for (n, a), (_, b) in zip(model.named_parameters(), other.named_parameters()):
        assert torch.allclose(a, b, atol=1e-5), n


def test_memory_estimate_lowers_the_micro_batch_and_raises_accumulation(llama_classifier):
    result = fit(llama_classifier, make_classification(), None, _cfg(max_steps=2, memory_limit_gb=1e-4), PAD, seed=0)
    assert result.micro_batch < 16 and result.micro_batch * result.grad_accum == 16


def test_memory_estimate_parts(llama_lm):
    from trainforge.train.memory import estimate

    n = sum(p.numel() for p in llama_lm.parameters())
    est = estimate(llama_lm, micro_batch=4, seq_len=16, precision="fp32", lm_head=True)
    assert (est.weights, est.gradients, est.optimizer) == (4 * n, 4 * n, 8 * n)
    assert est.activations > 4 * 16 * 40 * 4  # at least the logits
    for p in llama_lm.parameters():
        p.requires_grad_(False)
    assert estimate(llama_lm, 4, 16, "bf16", True).optimizer == 0


def test_early_stopping_keeps_the_best_weights(llama_classifier):
    data = make_classification()
    result = fit(llama_classifier, data, data, _cfg(max_steps=60, eval_every=2, early_stopping=2, lr=3e-2), PAD, seed=0)
    best = result.best["val_accuracy"]
    assert best == max(e["val_accuracy"] for e in result.evals)
    assert result.stopped_early and result.steps < 60
    assert evaluate(llama_classifier, data, PAD)["val_accuracy"] == pytest.approx(best)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains(llama_lm, precision):
    data = make_lm()
    result = fit(llama_lm, data, data, _cfg(max_steps=15, precision=precision, batch_size=8), PAD, seed=0)
    assert result.nonfinite_skipped == 0
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    assert "val_perplexity" in result.evals[-1]


class _Counter:
    """A callback: counts steps, records evaluations, and carries its count through checkpoints."""

    def __init__(self):
        self.steps, self.evals = 0, []

    def on_step_end(self, step, model, optimizer):
        self.steps += 1
        return {"counted": float(self.steps)}

    def on_evaluate(self, step, scores):
        self.evals.append((step, sorted(scores)))

    def state_dict(self):
        return {"steps": self.steps}

    def load_state_dict(self, state):
        self.steps = state["steps"]


def test_callbacks_see_every_step_and_evaluation_and_resume_with_their_state(llama_classifier, tmp_path):
    from trainforge.train import callbacks

    data = make_classification()
    given, ambient = _Counter(), _Counter()
    with callbacks.active(ambient):
        fit(llama_classifier, data, data, _cfg(max_steps=6, eval_every=3), PAD, seed=0, callbacks=[given],
            checkpoint_dir=tmp_path)
    assert given.steps == ambient.steps == 6
    assert [s for s, _ in given.evals] == [3, 6] and "val_accuracy" in given.evals[0][1]
    assert callbacks.collect(None) == []  # the ambient one is gone after the block

    resumed = _Counter()
    fit(llama_classifier, data, data, _cfg(max_steps=9, eval_every=3, resume=True), PAD, seed=0, callbacks=[resumed],
        checkpoint_dir=tmp_path)
    assert resumed.steps == 9  # 6 restored from the checkpoint + 3 more


def test_a_callback_that_raises_at_evaluation_stops_fit(llama_classifier):
    class Stop(Exception):
        pass

    class Pruner:
        def on_evaluate(self, step, scores):
            if step >= 4:
                raise Stop(step)

    with pytest.raises(Stop):
        fit(llama_classifier, make_classification(), make_classification(seed=1), _cfg(max_steps=20, eval_every=2),
            PAD, seed=0, callbacks=[Pruner()])
