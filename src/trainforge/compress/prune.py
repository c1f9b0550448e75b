"""Pruning: global magnitude (zeros in place) and structured (heads and FFN neurons really removed).

Magnitude pruning uses torch.nn.utils.prune's global L1 criterion over every linear weight of the
encoder/decoder body, then `prune.remove` folds each mask into its weight, so the saved model is a
plain dense HF model with zeros. Sparsity is counted from the weights afterwards, not assumed.
Dense kernels do not skip zeros: this variant is smaller only once compressed, never faster.

Structured pruning removes whole units so every matmul gets smaller:

    attention (per layer)                      FFN (per layer)
    q,k,v: rows of the dropped heads           up (and gate): rows of the dropped neurons
    o:     columns of the dropped heads        down:          columns of the dropped neurons

A unit's importance is the first-order Taylor estimate of the loss change when it is removed,
|Σ w·∂L/∂w| over its weights, accumulated over a few training batches (Molchanov et al., 2019).
Grouped-query attention is pruned a key/value group at a time (the kv head with its query heads),
so `num_key_value_groups` never changes. The same number of units goes in every layer, which keeps
the result expressible as a Hugging Face config (Llama: num_attention_heads/num_key_value_heads/
head_dim/intermediate_size). BERT derives head size from hidden_size/num_attention_heads and has
no per-layer head count any more (transformers 5 dropped `pruned_heads`), so a BERT with heads
removed is re-shaped by `trainforge.compress.load` from trainforge_compression.json before loading.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from trainforge.errors import UserError
from trainforge.models.families import family_of, registered_families

# --------------------------------------------------------------------------- magnitude


def body_linears(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    """Linear layers inside the transformer blocks (not the pooler or classification head)."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear) and (".layer." in n or ".layers." in n)]


def magnitude_prune(model: nn.Module, sparsity: float) -> nn.Module:
    """A copy whose smallest-|w| body linear weights (globally ranked) are zero, masks folded in."""
    from torch.nn.utils import prune

    model = copy.deepcopy(model)
    params = [(m, "weight") for _, m in body_linears(model)]
    if not params:
        raise UserError("compress.magnitude_sparsity: the model has no transformer-block linear layers to prune")
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=sparsity)
    for module, name in params:
        prune.remove(module, name)  # weight = weight_orig * mask, a plain parameter again
    return model


def measured_sparsity(model: nn.Module) -> float:
    """Share of exact zeros among body linear weights."""
    zeros = total = 0
    for _, m in body_linears(model):
        zeros += int((m.weight == 0).sum())
        total += m.weight.numel()
    return zeros / total if total else 0.0


# --------------------------------------------------------------------------- structured: architecture view


@dataclass
class BlockView:
    """The linear layers of one transformer block that structured pruning cuts."""

    attn: nn.Module  # holds q/k/v and the head-count attributes
    q: str
    k: str
    v: str
    o_owner: nn.Module
    o: str
    ffn_in_owner: nn.Module
    ffn_in: tuple[str, ...]  # (dense,) for BERT, (gate_proj, up_proj) for Llama
    ffn_out_owner: nn.Module
    ffn_out: str


def block_views(model: nn.Module) -> tuple[str, list[BlockView]]:
    """('bert' | 'llama', one view per layer) from the model's family (its `prune_layout`, models/families.py),
    or a UserError naming what is supported."""
    from trainforge.models.ensemble import EnsembleForSequenceClassification

    if isinstance(model, EnsembleForSequenceClassification):
        raise UserError(f"compress.structured: prunes one model's blocks and this is an ensemble of {len(model.members)} "
                        f"(train.ensemble); use int8, magnitude pruning or distill, or train with ensemble: 1")
    family = family_of(model)
    if family.prune_layout == "bert":
        return "bert", [
            BlockView(b.attention.self, "query", "key", "value", b.attention.output, "dense",
                      b.intermediate, ("dense",), b.output, "dense")
            for b in family.blocks_of(model)
        ]
    if family.prune_layout == "llama":
        return "llama", [
            BlockView(b.self_attn, "q_proj", "k_proj", "v_proj", b.self_attn, "o_proj",
                      b.mlp, ("gate_proj", "up_proj"), b.mlp, "down_proj")
            for b in family.blocks_of(model)
        ]
    supported = ", ".join(f.name for f in registered_families() if f.prune_layout)
    raise UserError(
        f"compress.structured: {type(model).__name__} is model family {family.name!r}, whose blocks structured "
        f"pruning cannot cut (mixture-of-experts FFNs, fused or differently named projections); it supports "
        f"BERT-style (encoder.layer[i].attention/intermediate) and Llama-style (layers[i].self_attn/mlp with "
        f"gate/up/down) families: {supported}"
    )


def head_layout(model: nn.Module) -> tuple[int, int, int]:
    """(query heads, key/value heads, head dim) per layer, from the config."""
    c = model.config
    heads = c.num_attention_heads
    kv = getattr(c, "num_key_value_heads", None) or heads
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // heads
    return heads, kv, head_dim


# --------------------------------------------------------------------------- importance


def _unit_taylor(lin: nn.Linear, rows_per_unit: int) -> torch.Tensor:
    """Σ w·∂L/∂w over each unit's output rows (and their biases): (out,) grouped → (units,)."""
    s = (lin.weight * lin.weight.grad).sum(1)
    if lin.bias is not None and lin.bias.grad is not None:
        s = s + lin.bias * lin.bias.grad
    return s.view(-1, rows_per_unit).sum(1)


def taylor_importance(model: nn.Module, batches: list[dict]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per layer: importance of each kv group (n_kv,) and of each FFN neuron (intermediate,)."""
    _, views = block_views(model)
    heads, kv, hd = head_layout(model)
    q_per_kv = heads // kv
    group_scores = [torch.zeros(kv) for _ in views]
    neuron_scores = [torch.zeros(getattr(v.ffn_out_owner, v.ffn_out).in_features) for v in views]
    model.eval()  # no dropout: the ranking depends on the weights, not on a random mask
    for batch in batches:
        model.zero_grad(set_to_none=True)
        model(**batch).loss.backward()
        with torch.no_grad():
            for i, v in enumerate(views):
                # Σ w·g per unit, abs taken after summing over the unit (the first-order Taylor term)
                o = getattr(v.o_owner, v.o)
                o_cols = (o.weight * o.weight.grad).sum(0).view(heads, hd).sum(1)  # per query head
                g = _unit_taylor(getattr(v.attn, v.q), q_per_kv * hd) + o_cols.view(kv, q_per_kv).sum(1)
                g = g + _unit_taylor(getattr(v.attn, v.k), hd) + _unit_taylor(getattr(v.attn, v.v), hd)
                group_scores[i] += g.abs()
                f = getattr(v.ffn_out_owner, v.ffn_out)
                n = (f.weight * f.weight.grad).sum(0)
                for name in v.ffn_in:
                    n = n + _unit_taylor(getattr(v.ffn_in_owner, name), 1)
                neuron_scores[i] += n.abs()
    model.zero_grad(set_to_none=True)
    return group_scores, neuron_scores


# --------------------------------------------------------------------------- slicing


def _sliced(lin: nn.Linear, idx: torch.Tensor, dim: int) -> nn.Linear:
    """A new Linear keeping output rows (dim=0) or input columns (dim=1) `idx`."""
    w = lin.weight.detach().index_select(dim, idx).clone()
    out_f, in_f = w.shape
    new = nn.Linear(in_f, out_f, bias=lin.bias is not None, dtype=w.dtype)
    new.weight = nn.Parameter(w)
    if lin.bias is not None:
        new.bias = nn.Parameter(lin.bias.detach().clone() if dim == 1 else lin.bias.detach()[idx].clone())
    return new


def shrink(model: nn.Module, keep_groups: list[torch.Tensor], keep_neurons: list[torch.Tensor]) -> nn.Module:
    """Slice every layer in place to the kept kv groups and FFN neurons; update attributes and config."""
    family, views = block_views(model)
    heads, kv, hd = head_layout(model)
    q_per_kv = heads // kv
    for v, groups, neurons in zip(views, keep_groups, keep_neurons):
        groups = groups.sort().values
        q_heads = (groups[:, None] * q_per_kv + torch.arange(q_per_kv)).flatten()
        q_idx = (q_heads[:, None] * hd + torch.arange(hd)).flatten()
        kv_idx = (groups[:, None] * hd + torch.arange(hd)).flatten()
        setattr(v.attn, v.q, _sliced(getattr(v.attn, v.q), q_idx, 0))
        setattr(v.attn, v.k, _sliced(getattr(v.attn, v.k), kv_idx, 0))
        setattr(v.attn, v.v, _sliced(getattr(v.attn, v.v), kv_idx, 0))
        setattr(v.o_owner, v.o, _sliced(getattr(v.o_owner, v.o), q_idx, 1))
        neurons = neurons.sort().values
        for name in v.ffn_in:
            setattr(v.ffn_in_owner, name, _sliced(getattr(v.ffn_in_owner, name), neurons, 0))
        setattr(v.ffn_out_owner, v.ffn_out, _sliced(getattr(v.ffn_out_owner, v.ffn_out), neurons, 1))
        if family == "bert":  # forward reshapes with view(-1, head_size): only these two are read
            v.attn.num_attention_heads = len(q_heads)
            v.attn.all_head_size = len(q_heads) * hd
        else:
            v.ffn_in_owner.intermediate_size = len(neurons)
    n_groups, n_neurons = len(keep_groups[0]), len(keep_neurons[0])
    model.config.intermediate_size = n_neurons
    if family == "llama":
        model.config.num_attention_heads = n_groups * q_per_kv
        model.config.num_key_value_heads = n_groups
        model.config.head_dim = hd
    return model


def structured_prune(model: nn.Module, fraction: float, batches: list[dict]) -> tuple[nn.Module, dict]:
    """A copy with `fraction` of kv groups and FFN neurons removed per layer; returns (model, structure)."""
    model = copy.deepcopy(model)
    family, _ = block_views(model)
    heads, kv, hd = head_layout(model)
    group_scores, neuron_scores = taylor_importance(model, batches)
    n_keep_groups = max(1, kv - int(round(fraction * kv)))
    n_keep_neurons = max(1, len(neuron_scores[0]) - int(round(fraction * len(neuron_scores[0]))))
    keep_groups = [s.topk(n_keep_groups).indices for s in group_scores]
    keep_neurons = [s.topk(n_keep_neurons).indices for s in neuron_scores]
    shrink(model, keep_groups, keep_neurons)
    structure = {
        "family": family,
        "attention_heads": n_keep_groups * (heads // kv),
        "key_value_heads": n_keep_groups,
        "head_dim": hd,
        "intermediate_size": n_keep_neurons,
        "removed_heads_per_layer": heads - n_keep_groups * (heads // kv),
        "removed_neurons_per_layer": len(neuron_scores[0]) - n_keep_neurons,
        "kept_heads": [sorted(int(g) for g in k) for k in keep_groups],
    }
    return model, structure


def reshape_like(model: nn.Module, structure: dict) -> nn.Module:
    """Give a freshly built model the pruned shapes (values are then loaded from the weights file)."""
    _, views = block_views(model)
    n_groups = structure["key_value_heads"]
    keep_groups = [torch.arange(n_groups) for _ in views]
    keep_neurons = [torch.arange(structure["intermediate_size"]) for _ in views]
    return shrink(model, keep_groups, keep_neurons)
