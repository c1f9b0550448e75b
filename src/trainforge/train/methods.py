"""Which parameters train, and at what learning rate: full, freeze, unfreeze, LoRA, prompt and prefix tuning.

A model is cut into groups from the bottom up (where its embeddings and blocks are: models/families.py):

    embeddings │ block 0 │ block 1 │ … │ block L-1 │ head (classifier/lm_head + final norm/pooler)

    full      every group trains at lr
    freeze    the top N blocks and the head train; the rest is fixed (requires_grad=False)
    unfreeze  ULMFiT: the head first, one more group from the top every K steps; group at depth d
              trains at lr / lr_decay**d (discriminative learning rates)
    lora      peft LoRA / DoRA on the attention projections; the new head trains in full
    prompt    peft prompt tuning: learned virtual tokens prepended to the input
    prefix    peft prefix tuning: learned key/value prefixes in every layer
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from trainforge.errors import UserError
from trainforge.models.families import family_of
from trainforge.train.config import TrainConfig


def transformer_blocks(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The stack of transformer blocks, where the model's family says it is (models/families.py) — the decoder
    layers of a mixture-of-experts model, never one layer's experts."""
    return family_of(model).blocks_of(model)


def layer_groups(model: torch.nn.Module) -> list[tuple[str, list[tuple[str, torch.nn.Parameter]]]]:
    """[(group name, [(param name, param)])] from the bottom (embeddings) to the top (head)."""
    family = family_of(model)
    blocks = family.blocks_of(model)
    block_of = {id(p): i for i, b in enumerate(blocks) for p in b.parameters()}
    embedding = {id(p) for m in family.embedding_modules(model) for p in m.parameters()}
    groups: dict[str, list] = {"embeddings": [], **{f"block {i}": [] for i in range(len(blocks))}, "head": []}
    for name, p in model.named_parameters():
        if id(p) in block_of:
            groups[f"block {block_of[id(p)]}"].append((name, p))
        elif id(p) in embedding:
            groups["embeddings"].append((name, p))
        else:  # classifier / lm_head / final norm / pooler: everything above the blocks
            groups["head"].append((name, p))
    return [(g, ps) for g, ps in groups.items() if ps]


@dataclass
class UnfreezePlan:
    """Progressive unfreezing: at step s, the top 1 + s // every groups train."""

    groups: list[list[torch.nn.Parameter]]
    """Top (head) first."""
    every: int
    active: int = field(default=0)

    def apply(self, step: int) -> bool:
        """Set requires_grad for `step`; True when the trainable set changed."""
        want = min(len(self.groups), 1 + step // max(1, self.every))
        if want == self.active:
            return False
        for i, params in enumerate(self.groups):
            for p in params:
                p.requires_grad_(i < want)
        self.active = want
        return True


@dataclass
class MethodSetup:
    model: torch.nn.Module
    groups: list[tuple[list[tuple[str, torch.nn.Parameter]], float]]
    """(named params, lr scale) for the optimizer: every parameter that may train during the run."""
    unfreeze: UnfreezePlan | None = None
    peft: bool = False


def discriminative(groups_head_first: list, decay: float) -> list[tuple[list, float]]:
    """ULMFiT's discriminative learning rates: the group at depth d below the head gets lr scale decay^-d."""
    return [(ps, decay ** -depth) for depth, (_, ps) in enumerate(groups_head_first)]


def apply_method(model: torch.nn.Module, cfg: TrainConfig, steps_per_epoch: int, task=None) -> MethodSetup:
    """task: the run's task (trainforge/tasks/), for peft's task type; default: the one train.task names."""
    method = cfg.method
    if method == "full":
        if cfg.layer_lr_decay == 1.0:
            return MethodSetup(model, [(list(model.named_parameters()), 1.0)])
        return MethodSetup(model, discriminative(layer_groups(model)[::-1], cfg.layer_lr_decay))
    if method in ("freeze", "unfreeze"):
        return _freeze(model, cfg, steps_per_epoch)
    return _peft(model, cfg, task)


def _freeze(model, cfg: TrainConfig, steps_per_epoch: int) -> MethodSetup:
    groups = layer_groups(model)[::-1]  # head first
    for p in model.parameters():
        p.requires_grad_(False)
    if cfg.method == "freeze":
        top_blocks = [ps for name, ps in groups if name.startswith("block")][: cfg.freeze.trainable_blocks]
        head = [ps for name, ps in groups if name == "head"]
        named = [np for ps in head + top_blocks for np in ps]
        for _, p in named:
            p.requires_grad_(True)
        return MethodSetup(model, [(named, 1.0)])
    every = cfg.freeze.unfreeze_every * (steps_per_epoch if cfg.freeze.unfreeze_unit == "epochs" else 1)
    plan = UnfreezePlan([[p for _, p in ps] for _, ps in groups], every)
    plan.apply(0)
    return MethodSetup(model, discriminative(groups, cfg.freeze.lr_decay), unfreeze=plan)


def lora_targets(model) -> list[str] | str:
    """The attention projections the model's family declares (llama: q_proj, v_proj; bert: query, value); for an
    unregistered family, peft's table, else every linear layer."""
    family = family_of(model)
    if family.lora_targets:
        return list(family.lora_targets)
    from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as known

    targets = known.get(family.model_types[0])
    return list(targets) if targets else "all-linear"


def _probe_prefix_classifier(wrapped) -> None:
    """One tiny forward, so a peft/transformers pair that cannot run prefix tuning on this classifier fails
    here with a sentence rather than at the first training step. (peft 0.21 looks for a `past_key_values`
    argument in the model's forward signature; transformers 5.2x calls it `cache`, so peft refuses.)"""
    import torch

    ids = torch.tensor([[wrapped.config.pad_token_id or 0] * 2])
    was_training = wrapped.training
    try:
        with torch.no_grad():
            wrapped.eval()  # no dropout: the probe must not draw from the seeded RNG
            wrapped(input_ids=ids, attention_mask=torch.ones_like(ids))
    except ValueError as e:
        import peft
        import transformers

        raise UserError(f"train.method=prefix: peft {peft.__version__} cannot run prefix tuning on "
                        f"{type(wrapped.get_base_model()).__name__} with transformers {transformers.__version__} ({e}); "
                        f"use train.method=prompt or lora for this classifier") from None
    finally:
        wrapped.train(was_training)


def _expert_targets(model, cfg: TrainConfig) -> dict:
    """train.moe.lora_experts: peft's target_parameters on the routed experts' fused weights (models/moe.py)."""
    if not cfg.moe.lora_experts:
        return {}
    from trainforge.models.moe import expert_parameter_targets

    targets = expert_parameter_targets(model)
    if not targets:
        raise UserError(f"train.moe.lora_experts=true: {type(model).__name__} has no fused expert weights to adapt "
                        f"(a dense model, or experts as Linear layers: name them in train.lora.target_modules); "
                        f"set train.moe.lora_experts: false")
    if cfg.lora.dora:
        raise UserError("train.moe.lora_experts=true with train.lora.dora=true: peft's DoRA does not cover expert "
                        "parameters; set one of them to false")
    if cfg.lora.dropout:
        raise UserError(f"train.moe.lora_experts=true needs train.lora.dropout: 0 (got {cfg.lora.dropout}): peft adapts "
                        f"fused expert weights as parameters, with no layer input to drop out")
    return {"target_parameters": targets}


def _peft(model, cfg: TrainConfig, task=None) -> MethodSetup:
    import peft

    if task is None:
        from trainforge.tasks import ClassificationTask, SFTTask

        task = ClassificationTask if cfg.task == "classification" else SFTTask
    # a task peft has no type for (images, image–text) gets a plain PeftModel; its family's heads train in full
    task_type = getattr(peft.TaskType, task.peft_task_type) if task.peft_task_type else None
    heads = None if task_type else [h for h in family_of(model).heads if hasattr(model, h)] or None
    head_reads_a_token = task.serves_as == "classifier"  # a classification head, not an LM head, reads the sequence
    if cfg.method == "lora":
        if cfg.lora.quantize:  # QLoRA: norms and embeddings back to fp32, inputs require grad for checkpointing
            model = peft.prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
        targets = cfg.lora.target_modules
        if targets == "auto":
            targets = lora_targets(model)
        pcfg = peft.LoraConfig(task_type=task_type, r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                               target_modules=targets, use_dora=cfg.lora.dora, modules_to_save=heads,
                               **_expert_targets(model, cfg))
    elif cfg.method == "prompt":
        pcfg = peft.PromptTuningConfig(task_type=task_type, num_virtual_tokens=cfg.prompt.virtual_tokens)
    else:
        pcfg = peft.PrefixTuningConfig(task_type=task_type, num_virtual_tokens=cfg.prompt.virtual_tokens)
    try:
        wrapped = peft.get_peft_model(model, pcfg)
    except ValueError as e:
        raise UserError(f"train.method={cfg.method}: peft cannot adapt {type(model).__name__}: {e}") from None
    if cfg.method == "prefix" and head_reads_a_token:
        _probe_prefix_classifier(wrapped)
    if cfg.method == "prompt" and head_reads_a_token:
        from trainforge.models.load import pool_last_real_token

        pool_last_real_token(wrapped)  # a decoder's head must read the last real token, not a pad (see there)
    named = [(n, p) for n, p in wrapped.named_parameters() if p.requires_grad]
    return MethodSetup(wrapped, [(named, 1.0)], peft=True)
