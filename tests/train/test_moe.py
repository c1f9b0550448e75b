"""MoE balancing and health (train/moe.py): the bias update, the balance losses against hand computations and
the library's, the health metrics, and total vs active parameters."""

from __future__ import annotations

import pytest
import torch

from tests.train.conftest import make_lm
from tests.train.moe_models import deepseek, mixtral
from trainforge.train.config import MoeConfig
from trainforge.train.loop import collate
from trainforge.train.moe import MoeBalancer, balancer_for, sequence_balance_loss


def _forward(model, n=8, seed=0):
    model.train()
    batch = collate(make_lm(n, seed=seed), list(range(n)), 0)
    return model(**batch), batch


def test_bias_moves_an_overloaded_expert_down_and_an_idle_one_up():
    model = deepseek()
    gate = model.model.layers[1].mlp.gate
    with torch.no_grad():  # expert 0 wins every token; expert 7 never does
        gate.e_score_correction_bias[0], gate.e_score_correction_bias[7] = 10.0, -10.0
    balancer = MoeBalancer(model, MoeConfig(bias_update_gamma=0.01))
    _forward(model)
    load = balancer.counts[0].clone()
    assert load[0] == load.max() and load[7] == 0
    balancer.on_step_end(1, model, None)
    bias = gate.e_score_correction_bias
    assert bias[0].item() == pytest.approx(10.0 - 0.01) and bias[7].item() == pytest.approx(-10.0 + 0.01)
    expected = 0.01 * torch.sign(load.mean() - load)  # every other expert by the same rule
    assert torch.allclose(bias[1:7], expected[1:7].float(), atol=1e-7)
    assert balancer.counts.sum() == 0  # counted afresh each step


def test_metrics_on_a_router_that_sends_everything_to_expert_0(capsys):
    e = 8
    model = deepseek(num_experts_per_tok=1, n_group=1, topk_group=1)
    with torch.no_grad():
        model.model.layers[1].mlp.gate.e_score_correction_bias[0] = 10.0
    balancer = MoeBalancer(model, MoeConfig(bias_update_gamma=0.0, idle_window=2, idle_warn_steps=3))
    for step in range(1, 4):
        _forward(model, seed=step)
        logged = balancer.on_step_end(step, model, None)
    assert logged["moe.layer1.max_mean"] == pytest.approx(e)  # max / mean = T / (T / E)
    assert logged["moe.layer1.expert0.load"] == 1.0 and logged["moe.idle_experts"] == e - 1
    assert 0 <= logged["moe.layer1.entropy"] <= torch.log(torch.tensor(float(e)))
    assert balancer.warnings == ["MoE layer 1: no token routed to expert(s) 1, 2, 3, 4, 5, 6, 7 for 3 steps (step 3)"]
    assert "no token routed" in capsys.readouterr().err
    summary = balancer.finish()
    assert summary["load_share"][0][0] == 1.0 and summary["history"][-1]["idle"] == [e - 1]


def test_sequence_balance_loss_equals_a_hand_computation():
    torch.manual_seed(0)
    b, t, e, k = 2, 5, 4, 2
    logits = torch.randn(b * t, e)
    index = torch.topk(logits, k, dim=-1).indices
    mask = torch.ones(b, t)
    mask[1, 3:] = 0  # padding stays out of T
    total = 0.0
    for s in range(b):
        tokens = [i for i in range(t) if mask[s, i]]
        f, p = [0.0] * e, [0.0] * e
        for i in tokens:
            row = [1 / (1 + float(torch.exp(-logits[s * t + i, j]))) for j in range(e)]
            for j in range(e):
                f[j] += e / (k * len(tokens)) * (j in index[s * t + i].tolist())
                p[j] += row[j] / sum(row) / len(tokens)
        total += sum(f[j] * p[j] for j in range(e)) / b
    assert float(sequence_balance_loss(logits, index, e, k, b, mask)) == pytest.approx(total, rel=1e-6)


def test_deepseek_balance_loss_joins_the_loss_with_alpha():
    model = deepseek()
    balancer = MoeBalancer(model, MoeConfig(aux_loss_alpha=0.5))
    base = lambda net, batch, w: net(**batch).loss  # noqa: E731
    loss_fn = balancer.loss_fn(base)
    batch = collate(make_lm(4), [0, 1, 2, 3], 0)
    model.train()

    class W:
        examples, tokens = 1.0, 1.0

    with_aux = loss_fn(model, batch, W)
    plain = base(model, batch, W)
    captured = []
    hook = model.model.layers[1].mlp.gate.register_forward_hook(lambda m, a, out: captured.append(out))
    model(**batch)
    hook.remove()
    logits, _, index = captured[0]
    expected = plain + 0.5 * sequence_balance_loss(logits, index, 8, 2, 4, batch["attention_mask"])
    assert torch.allclose(with_aux, expected, atol=1e-6)


def test_mixtral_uses_its_own_load_balancing_loss():
    """With one micro-batch our term is exactly what transformers adds with output_router_logits."""
    model = mixtral()
    balancer = MoeBalancer(model, MoeConfig(router_aux_loss_coef=0.1))
    assert not balancer.uses_bias and balancer.aux_weight == 0.1
    model.train()
    batch = collate(make_lm(4), [0, 1, 2, 3], 0)

    class W:
        examples, tokens = 1.0, 1.0

    ours = balancer.loss_fn(lambda net, b, w: net(**b).loss)(model, batch, W)
    model.router_aux_loss_coef = 0.1  # read from the config at __init__
    theirs = model(**batch, output_router_logits=True).loss
    assert torch.allclose(ours, theirs, atol=1e-6)


def test_dense_models_get_no_balancer():
    from transformers import LlamaForCausalLM

    from tests.train.conftest import llama_config

    assert balancer_for(LlamaForCausalLM(llama_config()), MoeConfig()) is None


def test_state_dict_round_trip_restores_the_bias():
    model = deepseek()
    balancer = MoeBalancer(model, MoeConfig(bias_update_gamma=0.05))
    for step in (1, 2):
        _forward(model, seed=step)
        balancer.on_step_end(step, model, None)
    state = balancer.state_dict()
    fresh = deepseek()
    again = MoeBalancer(fresh, MoeConfig(bias_update_gamma=0.05))
    again.load_state_dict(state)
    assert torch.equal(fresh.model.layers[1].mlp.gate.e_score_correction_bias,
                       model.model.layers[1].mlp.gate.e_score_correction_bias)
    assert again.history == balancer.history


def test_total_and_active_parameters():
    from trainforge.models.moe import parameter_counts, preset_parameter_counts
    from trainforge.models.presets import PRESETS

    model = deepseek()
    total, active = parameter_counts(model)
    experts = sum(p.numel() for p in model.model.layers[1].mlp.experts.parameters())
    assert total == sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    assert active == total - experts * (1 - 2 / 8)
    t, a = preset_parameter_counts(PRESETS["deepseek-tiny"])
    assert a < t
    t, a = preset_parameter_counts(PRESETS["llama-tiny"])
    assert a == t


def test_memory_estimate_counts_all_weights_but_active_activations():
    from trainforge.train.memory import estimate

    model = deepseek()
    total = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    est = estimate(model, 4, 16, "fp32", lm_head=False)
    assert est.weights == 4 * total and est.optimizer == 8 * total  # every expert's weights and moments
    more_experts = deepseek(n_routed_experts=16)  # twice the experts, same top-2: more weights, same activations
    est16 = estimate(more_experts, 4, 16, "fp32", lm_head=False)
    assert est16.weights > est.weights and est16.activations == pytest.approx(est.activations, rel=0.01)


def test_models_list_shows_total_and_active_parameters(capsys):
    import re

    from trainforge.cli import main

    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("deepseek-tiny"))
    total, active = map(float, re.findall(r"([\d.]+)M", row)[:2])
    assert active < total
    llama = next(line for line in out.splitlines() if line.startswith("llama-tiny"))
    assert len(set(re.findall(r"([\d.]+)M", llama)[:2])) == 1  # dense: total == active
    assert "MoE (bias balancing)" in out
