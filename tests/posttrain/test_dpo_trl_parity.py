"""Each DPO-family loss equals TRL's (1.16, a test-only dependency) on the same batch, model and reference log-probs.

sigmoid, hinge, ipo, robust: TRL's own DPOTrainer.compute_loss on our left-padded pair batch (its `loss_type`s, with
precomputed reference log-probs in the batch); sigmoid with label smoothing (cDPO): TRL's CPO sigmoid fed the log-ratios
(DPOTrainer 1.16 no longer smooths the sigmoid loss); simpo and orpo: TRL's CPOTrainer / ORPOTrainer
get_batch_loss_metrics on the same pairs in their right-padded format.
"""

from __future__ import annotations

import functools
import types

import pytest
import torch

from tests.posttrain.conftest import make_lm, make_tokenizer, review_rows
from trainforge.posttrain.dpo import LossSettings, pair_loss, sequence_logps
from trainforge.posttrain.dpo_loop import batch_of
from trainforge.posttrain.preference import encode_pairs, pairs_from_labels
from trainforge.tasks.info import PromptFormat

trl = pytest.importorskip("trl", reason="TRL is the parity reference: pip install 'trainforge[dev]'")

BETA, EPS = 0.3, 0.2


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    import datasets
    from trl import DPOConfig, DPOTrainer

    rows = review_rows(8)
    tok = make_tokenizer(rows)
    pairs, _ = pairs_from_labels(rows, PromptFormat(template="Good? {text}", label_names={"pos": "yes it is", "neg": "no"}))
    enc = encode_pairs(pairs, tok, 64)
    model = make_lm(tok, seed=1)
    torch.manual_seed(2)
    with torch.no_grad():  # a policy that has moved away from the reference: non-trivial ratios
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    idx = list(range(len(enc)))
    ref_c = torch.linspace(-14.0, -9.0, len(enc))
    ref_r = torch.linspace(-8.0, -13.0, len(enc))
    ds = datasets.Dataset.from_list([{"prompt": "a", "chosen": "b", "rejected": "c"}] * 2)
    args = DPOConfig(output_dir=str(tmp_path_factory.mktemp("trl")), precompute_ref_log_probs=True, report_to=[],
                     use_cpu=True, per_device_train_batch_size=2, beta=BETA, max_length=None)
    trainer = DPOTrainer(model=model, args=args, train_dataset=ds, processing_class=tok)
    return tok, enc, idx, trainer, ref_c, ref_r


def ours(model, enc, idx, pad_id, settings, ref_c=None, ref_r=None):
    out = sequence_logps(model, batch_of(enc, idx, pad_id))
    per_pair, metrics = pair_loss(settings, out, ref_c, ref_r)
    return per_pair.mean(), {k: float(v.mean()) for k, v in metrics.items()}


@pytest.mark.parametrize("kind,eps", [("sigmoid", 0.0), ("hinge", 0.0), ("ipo", 0.0), ("robust", EPS)])
def test_reference_losses_equal_trl_dpo_trainer(setup, kind, eps):
    tok, enc, idx, trainer, ref_c, ref_r = setup
    trainer.loss_types, trainer.loss_weights, trainer.label_smoothing = [kind], [1.0], eps
    trainer._metrics["train"].clear()
    batch = batch_of(enc, idx, tok.pad_token_id)
    trainer.model.train()
    theirs = trainer.compute_loss(trainer.model, {**batch, "ref_chosen_logps": ref_c, "ref_rejected_logps": ref_r})
    mine, metrics = ours(trainer.model, enc, idx, tok.pad_token_id, LossSettings(kind, BETA, eps), ref_c, ref_r)
    assert float(mine.detach()) == pytest.approx(float(theirs.detach()), rel=1e-5, abs=1e-6)
    logged = {k: v[-1] for k, v in trainer._metrics["train"].items()}
    for name, value in metrics.items():  # TRL's names, TRL's values
        assert value == pytest.approx(logged[name], rel=1e-4, abs=1e-5), name


def fake_trainer(cls, **attrs):
    """TRL's CPO/ORPO methods, called on a namespace holding the attributes they read (no Trainer, no dataset)."""
    base = dict(is_encoder_decoder=False, aux_loss_enabled=False, label_smoothing=0.0, alpha=0.0,
                accelerator=types.SimpleNamespace(device=torch.device("cpu"), gather_for_metrics=lambda t: t))
    me = types.SimpleNamespace(**{**base, **attrs})
    for name in ("concatenated_forward", "odds_ratio_loss", "cpo_loss", "get_batch_loss_metrics"):
        if hasattr(cls, name):
            setattr(me, name, functools.partial(getattr(cls, name), me))
    me.concatenated_inputs, me.get_batch_logps = cls.concatenated_inputs, cls.get_batch_logps
    return me


def trl_pair_batch(enc, idx, pad_id):
    """TRL's CPO/ORPO batch: prompt+answer rows, right-padded, labels -100 on the prompt and the padding."""
    out = {}
    for side, answers in (("chosen", enc.chosen), ("rejected", enc.rejected)):
        rows = [enc.prompt[i] + answers[i] for i in idx]
        width = max(map(len, rows))
        ids = torch.full((len(rows), width), pad_id)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        labels = torch.full((len(rows), width), -100)
        for r, i in enumerate(idx):
            n, p = len(rows[r]), len(enc.prompt[i])
            ids[r, :n], mask[r, :n] = torch.tensor(rows[r]), 1
            labels[r, p:n] = torch.tensor(answers[i])
        out.update({f"{side}_input_ids": ids, f"{side}_attention_mask": mask, f"{side}_labels": labels})
    return out


def test_simpo_equals_trl_cpo_simpo(setup):
    from trl.experimental.cpo import CPOTrainer

    tok, enc, idx, trainer, *_ = setup
    me = fake_trainer(CPOTrainer, loss_type="simpo", beta=2.0, simpo_gamma=0.7, cpo_alpha=0.0, label_smoothing=EPS,
                      pad_token_id=tok.pad_token_id)
    theirs, logged = me.get_batch_loss_metrics(trainer.model, trl_pair_batch(enc, idx, tok.pad_token_id))
    mine, metrics = ours(trainer.model, enc, idx, tok.pad_token_id, LossSettings("simpo", 2.0, EPS, simpo_gamma=0.7))
    assert float(mine.detach()) == pytest.approx(float(theirs.detach()), rel=1e-5)
    for name, value in metrics.items():
        assert value == pytest.approx(logged[name], rel=1e-4, abs=1e-5), name


def test_orpo_equals_trl_orpo(setup):
    from trl.experimental.orpo import ORPOTrainer

    tok, enc, idx, trainer, *_ = setup
    me = fake_trainer(ORPOTrainer, beta=0.25, padding_value=tok.pad_token_id)
    theirs, logged = me.get_batch_loss_metrics(trainer.model, trl_pair_batch(enc, idx, tok.pad_token_id))
    mine, metrics = ours(trainer.model, enc, idx, tok.pad_token_id, LossSettings("orpo", orpo_lambda=0.25))
    assert float(mine.detach()) == pytest.approx(float(theirs.detach()), rel=1e-5)
    for name, value in metrics.items():
        assert value == pytest.approx(logged[name], rel=1e-4, abs=1e-5), name


def test_label_smoothed_sigmoid_equals_trl_cdpo(setup):
    """cDPO: TRL's CPO sigmoid loss is −(1−ε)·log σ(β·x) − ε·log σ(−β·x) of x = its two inputs' difference; fed the
    policy-minus-reference log-ratios it is exactly conservative DPO."""
    from trl.experimental.cpo import CPOTrainer

    tok, enc, idx, trainer, ref_c, ref_r = setup
    out = sequence_logps(trainer.model, batch_of(enc, idx, tok.pad_token_id))
    chosen, rejected = out.answer.chunk(2)
    me = fake_trainer(CPOTrainer, loss_type="sigmoid", beta=BETA, label_smoothing=EPS)
    theirs, _, _ = me.cpo_loss(chosen - ref_c, rejected - ref_r)
    mine, _ = ours(trainer.model, enc, idx, tok.pad_token_id, LossSettings("sigmoid", BETA, EPS), ref_c, ref_r)
    assert float(mine.detach()) == pytest.approx(float(theirs.mean().detach()), rel=1e-6)
    assert float(mine.detach()) != pytest.approx(float(ours(trainer.model, enc, idx, tok.pad_token_id, LossSettings("sigmoid", BETA, 0.0),
                                                   ref_c, ref_r)[0].detach()), rel=1e-3)  # ε matters
