"""Distillation: the loss is Hinton's, the student starts from the teacher and moves towards it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests.compress.conftest import tiny_bert, tiny_llama, token_data
from trainforge.compress.config import DistillConfig
from trainforge.compress.distill import build_student, distill, distillation_loss, mean_kl, teacher_layers_for


def test_loss_is_t_squared_kl_plus_weighted_ce():
    s, t, y = torch.randn(5, 3), torch.randn(5, 3), torch.tensor([0, 1, 2, 0, 1])
    T, a = 3.0, 0.7
    p_t = F.softmax(t / T, -1)
    kl = (p_t * (p_t.log() - F.log_softmax(s / T, -1))).sum(-1).mean()
    expected = a * T * T * kl + (1 - a) * F.cross_entropy(s, y)
    assert torch.allclose(distillation_loss(s, t, y, a, T), expected, atol=1e-6)


def test_teacher_layer_mapping():
    assert teacher_layers_for(6, 3) == [1, 3, 5]
    assert teacher_layers_for(2, 1) == [1]
    assert teacher_layers_for(12, 4) == [2, 5, 8, 11]


@pytest.mark.parametrize("build", [lambda: tiny_bert(layers=4), tiny_llama])
def test_student_copies_teacher_blocks(build):
    teacher = build()
    student, mapping = build_student(teacher, None)
    assert student.config.num_hidden_layers == teacher.config.num_hidden_layers // 2
    t_state, s_state = teacher.state_dict(), student.state_dict()
    key = next(k for k in s_state if ".0." in k and k.endswith("weight") and s_state[k].ndim == 2)
    assert torch.equal(s_state[key], t_state[key.replace(".0.", f".{mapping[0]}.", 1)])
    assert sum(p.numel() for p in student.parameters()) < sum(p.numel() for p in teacher.parameters())


@pytest.mark.parametrize("hidden_loss_weight", [0.0, 1.0])
def test_distillation_lowers_student_kl_to_teacher(hidden_loss_weight):
    teacher, data = tiny_bert(layers=2), token_data(64)
    with torch.no_grad():  # an opinionated teacher (a random init predicts ~uniform): sharpen its head
        teacher.classifier.weight.mul_(40.0)
    torch.manual_seed(0)  # the same random student distill() starts from
    student, _ = build_student(teacher, 1, from_teacher=False)
    before = mean_kl(student, teacher, data, 0)
    cfg = DistillConfig(max_steps=20, lr=3e-3, batch_size=16, alpha=1.0, temperature=2.0,
                        hidden_loss_weight=hidden_loss_weight, init_from_teacher=False)
    trained, summary = distill(teacher, data, cfg, 0, seed=0)
    after = mean_kl(trained, teacher, data, 0)
    assert summary["student_layers"] == 1 and summary["steps"] == 20
    assert after < 0.5 * before, (before, after)


def test_an_ensemble_distils_into_an_ensemble_of_shallower_members():
    """train.ensemble's model: each member keeps evenly spaced blocks of its own teacher member."""
    from trainforge.models.ensemble import EnsembleForSequenceClassification

    teacher = EnsembleForSequenceClassification.from_members([tiny_llama(seed=s) for s in (0, 1)])
    student, mapping = build_student(teacher, None)
    assert type(student) is EnsembleForSequenceClassification and len(student.members) == 2
    assert all(m.config.num_hidden_layers == teacher.config.num_hidden_layers // 2 for m in student.members)
    t_state, s_state = teacher.state_dict(), student.state_dict()
    for k in (0, 1):
        key = f"members.{k}.model.layers.0.mlp.up_proj.weight"
        assert torch.equal(s_state[key], t_state[key.replace(".layers.0.", f".layers.{mapping[0]}.")])
    data = token_data(64)
    with torch.no_grad():  # opinionated members, as above, and a random student (hidden states: the members' mean)
        for m in teacher.members:
            m.score.weight.mul_(40.0)
    torch.manual_seed(0)
    before = mean_kl(build_student(teacher, 1, from_teacher=False)[0], teacher, data, 0)
    cfg = DistillConfig(max_steps=20, lr=3e-3, batch_size=16, alpha=1.0, temperature=2.0, hidden_loss_weight=1.0,
                        init_from_teacher=False)
    trained, summary = distill(teacher, data, cfg, 0, seed=0)
    assert summary["steps"] == 20 and mean_kl(trained, teacher, data, 0) < 0.5 * before, before
