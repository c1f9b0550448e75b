"""An auxiliary next-token loss while a decoder classifier fine-tunes (`train.lm_loss`).

Fine-tuning a small pretrained LM in full on a few thousand labels pulls the body away from what
pretraining taught it, and where it lands depends a lot on the seed. Adding

    loss = cross-entropy(labels) + lm_loss × next-token cross-entropy on the example's own text

keeps the body a language model while the head learns the labels: the auxiliary LM objective of
Chronopoulou et al. (2019), "An Embarrassingly Simple Approach for Transfer Learning from
Pretrained Language Models". The text is already in the batch, so it costs one output projection
over the real tokens per step (about 1.6× the fine-tuning time of llama-tiny, whose vocabulary
projection is as large as its blocks) and nothing at inference: model/ is the plain classifier.

The output projection is the body's input embedding when the two are tied (the built-in Llama
presets, most small decoders), else the pretrained directory's own `lm_head`, held fixed.
Under FSDP the embedding parameter is a sharded DTensor between forwards and the gathered tensor
during one, so the loop builds the loss after wrapping (`fit(loss_fn_factory=...)`) and the tied
projection is read from the module at each call (`output_projection(..., live=True)`), never captured.

The LM term is a mean over the global batch's predicted tokens and the classifier's a mean over its
examples, however the loop splits the batch into micro-batches and ranks (train/loop.py's `Weights`):
gradient accumulation and DDP give the gradient of one process on the whole batch.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from trainforge.errors import UserError
from trainforge.models.families import is_causal_lm
from trainforge.train.loop import Weights


def saved_lm_head(directory: Path) -> torch.Tensor | None:
    """The `lm_head.weight` tensor of a saved causal LM (single or sharded safetensors), or None."""
    from safetensors import safe_open

    index = directory / "model.safetensors.index.json"
    if index.is_file():
        shard = json.loads(index.read_text()).get("weight_map", {}).get("lm_head.weight")
        files = [directory / shard] if shard else []
    else:
        files = [directory / "model.safetensors"]
    for f in files:
        if f.is_file():
            with safe_open(str(f), "pt") as st:
                if "lm_head.weight" in st.keys():
                    return st.get_tensor("lm_head.weight")
    return None


def output_projection(model: torch.nn.Module, source: Path | None, live: bool = False):
    """The vocabulary projection the auxiliary loss uses: the (tied, trainable) input embedding, or the
    pretrained lm_head read from `source` and kept fixed. Raises a UserError naming train.lm_loss otherwise.
    live: the tied embedding as a function that reads the module's parameter when called (FSDP swaps it)."""
    config = model.config
    if not is_causal_lm(config):
        raise UserError(f"train.lm_loss: the body is a {config.model_type} encoder, which has no next-token head; "
                        f"lm_loss is for decoder classifiers (train.model: pretrain, a llama preset or a causal-LM "
                        f"directory). Set train.lm_loss: 0")
    embedding = model.get_input_embeddings().weight
    if getattr(config, "tie_word_embeddings", False):
        return (lambda: model.get_input_embeddings().weight) if live else embedding
    head = saved_lm_head(source) if source is not None else None
    if head is None or head.shape != embedding.shape:
        where = f"{source} holds no lm_head.weight of shape {tuple(embedding.shape)}" if source is not None else \
            "a fresh preset has no trained lm_head"
        raise UserError(f"train.lm_loss: this body's input and output embeddings are untied and {where}; "
                        f"use a pretrained causal-LM directory (or a tied preset) or set train.lm_loss: 0")
    return head.to(embedding.device, embedding.dtype)  # once, not every step


def auxiliary_loss(weight: float, projection: torch.Tensor | Callable[[], torch.Tensor]
                   ) -> Callable[[torch.nn.Module, dict, Weights], torch.Tensor]:
    """loss_fn for train.loop.fit: the classifier's loss plus `weight` × the mean next-token loss over the
    batch's real tokens, from the body's final (normed) hidden states. projection: a tensor, or a function
    giving it at each call (after the forward, so under FSDP it is the gathered tied embedding)."""

    def loss_fn(net: torch.nn.Module, batch: dict, weights: Weights) -> torch.Tensor:
        out = net(**batch, output_hidden_states=True)
        hidden = out.hidden_states[-1]  # B, T, C after the final norm
        mask = batch["attention_mask"]
        follows = (mask[:, 1:] * mask[:, :-1]).bool()  # position t predicts token t+1, both real
        weight_now = projection() if callable(projection) else projection
        logits = hidden[:, :-1][follows] @ weight_now.to(hidden.device, hidden.dtype).T  # real positions only: N, V
        lm = F.cross_entropy(logits.float(), batch["input_ids"][:, 1:][follows], reduction="sum")
        return out.loss * weights.examples + weight * lm / weights.tokens

    return loss_fn
