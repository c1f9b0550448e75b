import math

import pytest
import torch

from trainforge.train.config import ScheduleConfig
from trainforge.train.loop import lr_at, param_groups


def test_warmup_then_cosine_at_known_steps():
    s = ScheduleConfig(warmup_ratio=0.1, decay="cosine", min_lr_ratio=0.0)
    assert lr_at(0, 100, 1.0, s) == pytest.approx(0.1)      # (0+1)/10
    assert lr_at(9, 100, 1.0, s) == pytest.approx(1.0)      # end of warmup
    assert lr_at(10, 100, 1.0, s) == pytest.approx(1.0)     # cosine starts at the peak
    assert lr_at(55, 100, 1.0, s) == pytest.approx(0.5)     # halfway through the decay
    assert lr_at(100, 100, 1.0, s) == pytest.approx(0.0, abs=1e-12)


def test_linear_constant_and_floor():
    lin = ScheduleConfig(warmup_ratio=0.0, decay="linear", min_lr_ratio=0.1)
    assert lr_at(0, 10, 2.0, lin) == pytest.approx(2.0)
    assert lr_at(5, 10, 2.0, lin) == pytest.approx(0.2 + 1.8 * 0.5)
    assert lr_at(10, 10, 2.0, lin) == pytest.approx(0.2)
    const = ScheduleConfig(warmup_ratio=0.2, decay="constant")
    assert lr_at(1, 10, 3.0, const) == pytest.approx(3.0)
    assert lr_at(9, 10, 3.0, const) == pytest.approx(3.0)
    cos = ScheduleConfig(warmup_ratio=0.0, decay="cosine", min_lr_ratio=0.1)
    assert lr_at(5, 10, 1.0, cos) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))


def test_no_weight_decay_on_biases_and_norms(llama_classifier, bert_classifier):
    for model in (llama_classifier, bert_classifier):
        groups = param_groups([(list(model.named_parameters()), 0.5)], weight_decay=0.1)
        names = {id(p): n for n, p in model.named_parameters()}
        for g in groups:
            assert g["lr_scale"] == 0.5
            for p in g["params"]:
                n = names[id(p)]
                if p.ndim < 2 or "norm" in n.lower():
                    assert g["weight_decay"] == 0.0, n
                else:
                    assert g["weight_decay"] == 0.1, n
        assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_tied_weights_enter_the_optimizer_once(llama_lm):
    named = list(llama_lm.named_parameters())
    named.append(("lm_head.weight (tied)", named[0][1]))  # a tied weight seen under a second name
    groups = param_groups([(named, 1.0)], 0.1)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(named) - 1
    torch.optim.AdamW(groups)  # raises on a parameter listed twice
