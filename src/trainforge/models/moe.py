"""Mixture-of-experts models: their routers, and parameters counted in total and per token.

A MoE decoder (models/families.py `Family.moe`) replaces some blocks' MLP by a router and E routed
experts (plus, in DeepSeek and Qwen-MoE, shared experts every token runs through):

    block ─ attention ─┬─ router: token → top-k of E experts ─► k expert MLPs (weighted) ─┬─► +
                       └─ shared experts (every token) ────────────────────────────────────┘

so a token touches only k/E of the routed experts' weights. The *total* parameters are what memory
holds (weights, gradients, optimizer moments); the *active* parameters per token are what a forward
computes, and what activations scale with: total − Σ over MoE blocks of routed-expert params × (1 − k/E).
"""

from __future__ import annotations

from dataclasses import dataclass

from trainforge.models.families import Family, _attr, family_of


@dataclass(frozen=True)
class Router:
    layer: int
    """Index of the block in the model's stack."""
    module: object
    """The router module (its forward returns router_logits, top-k weights, top-k indices)."""
    experts: object
    """The block's routed experts."""


def is_moe(model_or_config) -> bool:
    return family_of(model_or_config).moe is not None


def routers(model, family: Family | None = None) -> list[Router]:
    """Every MoE block's router, in block order (dense blocks, e.g. DeepSeek's first_k_dense_replace, are skipped)."""
    family = family or family_of(model)
    if family.moe is None:
        return []
    found = []
    for i, block in enumerate(family.blocks_of(model)):
        router = _attr(block, family.moe.router)
        if router is not None and hasattr(router, "weight"):
            found.append(Router(i, router, _attr(block, family.moe.experts)))
    return found


def experts_and_top_k(config, family: Family | None = None) -> tuple[int, int]:
    """(routed experts E, experts per token k) from a config."""
    family = family or family_of(config)
    return int(getattr(config, family.moe.experts_field)), int(getattr(config, family.moe.top_k_field))


def parameter_counts(model) -> tuple[int, int]:
    """(total, active per token) parameters; tied weights counted once. A dense model's two are equal."""
    family = family_of(model)
    total = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    found = routers(model, family)
    if not found:
        return total, total
    e, k = experts_and_top_k(model.config, family)
    idle = sum(sum(p.numel() for p in r.experts.parameters()) * (1 - k / e) for r in found)
    return total, int(round(total - idle))


def preset_parameter_counts(preset, vocab_size: int = 8000, max_positions: int = 128) -> tuple[int, int]:
    """(total, active) of a preset at `vocab_size`, built on the meta device (no memory, no initialisation)."""
    import torch

    from trainforge.models.families import family_named
    from trainforge.models.presets import preset_config

    family = family_named(preset.family)
    if {"text", "vision"} <= set(preset.config):  # a dual encoder (CLIP): its towers' configs, a 2k vocabulary
        config = family.config_cls()(text_config={**preset.config["text"], "vocab_size": 2000},
                                     vision_config=preset.config["vision"], projection_dim=preset.config["projection_dim"])
    else:
        config = preset_config(preset, vocab_size, max_positions, 0.0, {"pad_token_id": 0})
    from trainforge.errors import UserError

    try:
        build = family.causal_lm_cls() if family.decoder else family.classifier_cls()
    except UserError:  # a family with no classifier head (CLIP: a dual encoder): its bare model
        from transformers import AutoModel

        build = AutoModel.from_config
    with torch.device("meta"):
        model = build(config)
    return parameter_counts(model)


def expert_parameter_targets(model) -> list[str]:
    """peft `target_parameters` for the routed experts: their fused 3-D weights (e.g. mlp.experts.gate_up_proj,
    mlp.experts.down_proj), which are parameters, not Linear layers `target_modules` could name. [] for a dense
    model or experts stored as separate Linear layers (those are named through target_modules instead)."""
    family = family_of(model)
    found = routers(model, family)
    if not found or found[0].experts is None:
        return []
    return [f"{family.moe.experts}.{name}" for name, p in found[0].experts.named_parameters(recurse=False) if p.ndim == 3]


def mlp_activation_scales(model, hidden: int, layers: int) -> list[float]:
    """Per block, the MLP's activation memory relative to a dense 4h MLP (Korthikanti et al.'s 19·B·T·H term):
    1.0 for a dense block (and every block of a dense model); for a MoE block, its *active* MLP parameters per
    token (k of E routed experts, the shared ones, the router) over the dense MLP's 8·H²."""
    family = family_of(model)
    found = {r.layer: r for r in routers(model, family)}
    if not found:
        return [1.0] * layers
    e, k = experts_and_top_k(model.config, family)
    mlp_path = family.moe.router.rpartition(".")[0]
    scales = []
    for i, block in enumerate(family.blocks_of(model)):
        if i not in found:
            scales.append(1.0)
            continue
        mlp = _attr(block, mlp_path) if mlp_path else block
        every = sum(p.numel() for p in mlp.parameters())
        routed = sum(p.numel() for p in found[i].experts.parameters())
        scales.append((every - routed * (1 - k / e)) / (8 * hidden * hidden))
    return scales
