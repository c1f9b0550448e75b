"""train.class_weights: scikit-learn's balanced rule, torch's weighted cross-entropy, and the loop uses it."""

import pytest
import torch

from trainforge.batching import Encoded
from trainforge.errors import UserError
from trainforge.tasks.classification import ClassificationTask, weights_for
from trainforge.train.config import TrainConfig
from trainforge.train.loop import Weights, fit


def _rows():
    return [{"id": str(i), "text": "好" * (1 + i % 5), "label": "pos"} for i in range(9)] + [{"id": "n", "text": "差", "label": "neg"}]


def test_balanced_weights_are_scikit_learns():
    import numpy as np
    from sklearn.utils.class_weight import compute_class_weight

    y = [r["label"] for r in _rows()]
    ours = weights_for(["neg", "pos"], y, "balanced")
    np.testing.assert_allclose(ours, compute_class_weight("balanced", classes=np.array(["neg", "pos"]), y=np.array(y)))
    assert weights_for(["neg", "pos"], y, {"neg": 4.0}) == [4.0, 1.0]
    with pytest.raises(UserError, match="absent"):
        weights_for(["neg", "pos"], y, {"neutral": 2.0})
    with pytest.raises(ValueError, match="class_weights"):
        TrainConfig(task="sft", class_weights="balanced")


def _tiny_bert(seed=0):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    return BertForSequenceClassification(BertConfig(vocab_size=20, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                                    intermediate_size=32, max_position_embeddings=16, num_labels=2))


def test_weighted_loss_is_torchs_weighted_cross_entropy_and_unit_weights_are_the_models_own_loss():
    net = _tiny_bert().eval()  # no dropout: the two forwards must see the same network
    batch = {"input_ids": torch.tensor([[1, 2, 3], [4, 5, 0], [6, 0, 0]]), "attention_mask": torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 0]]),
             "labels": torch.tensor([0, 1, 1])}
    w = Weights(examples=0.5, tokens=1.0)
    task = ClassificationTask(["neg", "pos"], class_weights=[3.0, 0.5])
    logits = net(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    ref = torch.nn.functional.cross_entropy(logits, batch["labels"], weight=torch.tensor([3.0, 0.5]), reduction="none").mean()
    torch.testing.assert_close(task.loss(net, batch, w), ref * 0.5)
    ones = ClassificationTask(["neg", "pos"], class_weights=[1.0, 1.0])
    torch.testing.assert_close(ones.loss(net, batch, w), ClassificationTask(["neg", "pos"]).loss(net, batch, w))


def test_the_loop_trains_on_the_weighted_loss():
    from trainforge.train.config import LoopConfig

    rows = _rows()
    enc = Encoded([[1 + len(r["text"]), 2, 3][: 1 + len(r["text"]) % 3] for r in rows], [1 if r["label"] == "pos" else 0 for r in rows])
    cfg = LoopConfig(max_steps=3, batch_size=10, lr=1e-2, precision="fp32", schedule={"warmup_ratio": 0.0})

    def trained(task):
        model = _tiny_bert()
        fit(model, enc, None, cfg, 0, seed=0, task=task)
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    plain = trained(ClassificationTask(["neg", "pos"]))
    unit = trained(ClassificationTask(["neg", "pos"], class_weights=[1.0, 1.0]))
    balanced = trained(ClassificationTask.from_rows(rows, 16, "balanced"))
    torch.testing.assert_close(unit, plain)
    assert not torch.allclose(balanced, plain)


def test_the_train_stage_hands_the_config_to_the_task():
    from trainforge.train.stage import train_task

    task = train_task(TrainConfig(class_weights="balanced"), _rows())
    assert task.labels == ["neg", "pos"] and task.class_weights == pytest.approx([10 / 2, 10 / 18])
    assert train_task(TrainConfig(), _rows()).class_weights is None
