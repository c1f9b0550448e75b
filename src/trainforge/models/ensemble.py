"""A deep ensemble of classifiers saved, loaded, compressed and served as one model.

K classifiers fine-tuned from the same starting weights with different seeds (head initialisation,
data order, dropout) make different mistakes; averaging their probabilities (Lakshminarayanan et
al., 2017) removes part of each one's seed luck:

    text ──► member 1 ──► softmax ─┐
        ├──► member 2 ──► softmax ─┼──► mean ──► log ──► logits (B, labels)
        └──► member K ──► softmax ─┘

The logits are the log of the averaged probabilities, so softmax(logits) is the ensemble's
probabilities and argmax, cross-entropy and KL behave as for any classifier. Attention and hidden
states (for attention maps and distillation) are averaged over the members, layer by layer.

On disk (`train.ensemble: K`) model/ holds config.json (the members' config with
`architectures: [EnsembleForSequenceClassification]`, `ensemble_size` and
`ensemble_member_architectures`), the tokenizer, and model.ensemble.safetensors with every
member's weights under `members.<k>.`. The file is deliberately not model.safetensors, so a plain
`AutoModelForSequenceClassification.from_pretrained` fails loudly instead of loading one member's
shape with none of the weights; `trainforge.models.load.load_classifier` dispatches here. INT8
and distilled variants of an ensemble are ensembles too (each member quantized or shrunk).

Measured on the quickstart (benchmarks/README.md, finetune_seeds.py; one standard error on test ≈
0.009): three members scored 0.865, 0.859, 0.863 and 0.853 test accuracy in four trials, about a
point above one model on average but once almost nothing. Averaging their weights instead (a
"model soup") kept under half the gain, a snapshot ensemble none, and one model distilled from
the ensemble lost it.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from trainforge.models.families import new_classifier

ARCHITECTURE = "EnsembleForSequenceClassification"
WEIGHTS = "model.ensemble.safetensors"


def member_config(config):
    """The config one member is built from: the ensemble's, with the members' own architecture."""
    member = copy.deepcopy(config)
    member.architectures = list(getattr(config, "ensemble_member_architectures", None) or [])
    for key in ("ensemble_size", "ensemble_member_architectures"):
        if hasattr(member, key):
            delattr(member, key)
    return member


def first_member(model: nn.Module) -> nn.Module:
    """An ensemble's first member (what shape-reading code looks at); any other model as it is."""
    return model.members[0] if isinstance(model, EnsembleForSequenceClassification) else model


def _mean(per_member: list) -> tuple | None:
    """Layer-wise mean of the members' attentions or hidden states (None when they returned none)."""
    if any(x is None for x in per_member):
        return None
    return tuple(torch.stack(layer).mean(0) for layer in zip(*per_member))


class EnsembleForSequenceClassification(nn.Module):
    """K sequence classifiers of one architecture; forward returns the log of their mean probabilities."""

    def __init__(self, config, members: list[nn.Module] | None = None, attn_implementation: str | None = None):
        super().__init__()
        if members is None:
            one = member_config(config)
            if attn_implementation:  # e.g. "eager" for attention maps
                one._attn_implementation = attn_implementation
            members = [new_classifier(one) for _ in range(int(config.ensemble_size))]
        self.members = nn.ModuleList(members)
        self.config = config

    @classmethod
    def from_members(cls, members: list[nn.Module]) -> "EnsembleForSequenceClassification":
        if len(members) < 2:
            raise ValueError("an ensemble needs at least two members")
        config = copy.deepcopy(members[0].config)
        config.ensemble_member_architectures = list(config.architectures or [type(members[0]).__name__])
        config.ensemble_size = len(members)
        config.architectures = [ARCHITECTURE]
        return cls(config, list(members))

    def forward(self, input_ids=None, attention_mask=None, labels=None, output_attentions=None,
                output_hidden_states=None, **kwargs):
        from transformers.modeling_outputs import SequenceClassifierOutput

        outs = [m(input_ids=input_ids, attention_mask=attention_mask, output_attentions=output_attentions,
                  output_hidden_states=output_hidden_states, **kwargs) for m in self.members]
        probs = torch.stack([o.logits.float().softmax(-1) for o in outs]).mean(0)  # B, labels
        logits = probs.clamp_min(torch.finfo(probs.dtype).tiny).log()
        loss = nn.functional.nll_loss(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(
            loss=loss, logits=logits,
            hidden_states=_mean([o.hidden_states for o in outs]) if output_hidden_states else None,
            attentions=_mean([o.attentions for o in outs]) if output_attentions else None,
        )

    def get_input_embeddings(self) -> nn.Module:
        return self.members[0].get_input_embeddings()

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def save_pretrained(self, out: str | Path, **_) -> None:
        from safetensors.torch import save_model

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        self.config.save_pretrained(out)
        save_model(self, str(out / WEIGHTS), metadata={"format": "pt", "trainforge": "ensemble"})

    @classmethod
    def from_pretrained(cls, model_dir: str | Path, attn_implementation: str | None = None, **_):
        """model_dir as save_pretrained wrote it (always safetensors); attn_implementation applies to every member."""
        from safetensors.torch import load_model
        from transformers import AutoConfig

        from trainforge.errors import UserError

        model_dir = Path(model_dir)
        weights = model_dir / WEIGHTS
        if not weights.is_file():
            raise UserError(f"{model_dir}: config.json names an ensemble but {WEIGHTS} is missing; "
                            f"re-run `trainforge run CONFIG --only train` to write it")
        model = cls(AutoConfig.from_pretrained(model_dir), attn_implementation=attn_implementation)
        missing, unexpected = load_model(model, str(weights), strict=False)
        if missing or unexpected:
            raise UserError(f"{weights}: weights do not match config.json's {model.config.ensemble_size} members "
                            f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})")
        return model.eval()

