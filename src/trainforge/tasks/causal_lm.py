"""Causal language modelling: next-token prediction on packed text (the pretrain stage, ULMFiT steps 1-2).

    encode    documents framed <s> doc </s>, concatenated and cut into seq_len blocks: no token is padding
    loss      the summed next-token loss over the micro-batch's targets ÷ the global batch's target count
              (transformers' num_items_in_batch), so accumulation and DDP give one process's gradient
    validate  token-weighted val_loss and perplexity; the best checkpoint has the lowest val_loss
    evaluate  evaluate/lm.py: per-character perplexity beside a character trigram Kneser–Ney LM
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from trainforge.batching import Encoded, collate, eval_batches, model_device
from trainforge.tasks.base import EvalJob, ModelSpec
from trainforge.tasks.info import ModelInfo


def token_targets(enc: Encoded) -> list[int]:
    """Targets other than -100 after the shift (position t predicts t+1) per example."""
    return [sum(t != -100 for t in labels[1:]) for labels in enc.token_labels]


def token_loss(net, batch: dict, weights, chunked_ce: int | None = None):
    """Summed over the micro-batch's targets, ÷ the global batch's (train/loop.py Weights.tokens).
    chunked_ce: tokens per chunk of `chunked_next_token_loss` instead of the model's own loss."""
    if chunked_ce is None:
        return net(**batch, num_items_in_batch=weights.tokens).loss
    return chunked_next_token_loss(net, batch, chunked_ce, checkpoint=True) / weights.tokens


def output_head(net):
    """The vocabulary projection (lm_head) under any DDP / torch.compile / peft wrapping."""
    while hasattr(net, "module") and not hasattr(net, "get_output_embeddings"):  # DDP hides its model's methods
        net = net.module
    return net.get_output_embeddings()


def chunked_next_token_loss(net, batch: dict, chunk: int, checkpoint: bool):
    """The summed next-token cross-entropy (ignore_index -100, logits upcast to fp32: transformers' ForCausalLMLoss)
    without ever holding the B×T×V logits: the body runs once to its final hidden states, then lm_head and the loss
    run over `chunk` target positions at a time.

        hidden B,T,C ─shift, keep targets ≠ -100─▶ N,C ─┬─ chunk 0: lm_head → chunk,V fp32 → CE sum ─┐
                                                        ├─ chunk 1: …                                 ├─▶ Σ
                                                        └─ …                                          ┘
    checkpoint: each chunk under torch.utils.checkpoint, so backward recomputes its chunk×V logits rather than
    keeping all of them (one more lm_head pass; the point for a 128k vocabulary, where the logits dwarf the body).
    """
    import torch.nn.functional as F
    from torch.utils.checkpoint import checkpoint as recompute

    labels = batch["labels"]
    # logits_to_keep=1: the model's own head runs on the last position only (B×1×V) and its loss is skipped;
    # called through `net` itself so DDP / FSDP hooks see the forward. hidden_states[-1] is after the final norm.
    out = net(**{k: v for k, v in batch.items() if k != "labels"}, output_hidden_states=True, logits_to_keep=1)
    hidden = out.hidden_states[-1][:, -labels.shape[1] :]  # prompt tuning prepends virtual tokens: drop them
    hidden = hidden[:, :-1]  # position t predicts token t+1
    targets = labels[:, 1:].to(hidden.device)
    keep = targets != -100
    hidden, targets = hidden[keep], targets[keep]  # N, C and N: prompts and padding never reach the head
    head = output_head(net)

    def chunk_loss(h, y):
        return F.cross_entropy(head(h).float(), y, reduction="sum")

    total = hidden[:0].sum().float()  # 0, yet in the graph: a micro-batch without targets still backpropagates
    for i in range(0, targets.shape[0], chunk):
        h, y = hidden[i : i + chunk], targets[i : i + chunk]
        total = total + (recompute(chunk_loss, h, y, use_reentrant=False) if checkpoint else chunk_loss(h, y))
    return total


def token_validate(model, val: Encoded, pad_id: int, batch_size: int = 64, chunked_ce: int | None = None) -> dict[str, float]:
    import torch

    from trainforge.device import to_device

    model.eval()
    device = model_device(model)
    total, count = 0.0, 0
    with torch.no_grad():
        for idx in eval_batches(val, batch_size):
            batch = to_device(collate(val, idx, pad_id), device)
            n = int((batch["labels"][:, 1:] != -100).sum())  # HF shifts: position t predicts t+1
            if chunked_ce is None:
                total += float(model(**batch).loss) * n
            else:  # the same sum, without the batch's full logits (no_grad: nothing to recompute)
                total += float(chunked_next_token_loss(model, batch, chunked_ce, checkpoint=False))
            count += n
    loss = total / max(1, count)
    return {"val_loss": loss, "val_perplexity": math.exp(min(loss, 50.0))}


@dataclass
class CausalLMTask:
    seq_len: int = 128
    chunked_ce: int | None = None
    """Tokens per chunk of the chunked cross-entropy (pretrain.chunked_ce); None: the model's own loss."""

    name: ClassVar[str] = "causal_lm"
    peft_task_type: ClassVar[str] = "CAUSAL_LM"
    serves_as: ClassVar[str] = "generator"
    token_level: ClassVar[bool] = True
    selection: ClassVar[tuple[str, bool]] = ("val_loss", False)
    compressible: ClassVar[bool] = False

    def prepare_tokenizer(self, tokenizer) -> None:
        """Packed text needs nothing beyond the tokenizer's own <s> … </s> framing."""

    def encode(self, rows: list[dict], tokenizer, held_out: bool = False) -> Encoded:
        """Concatenate the documents' tokens (each framed <s> … </s>) and cut into seq_len blocks."""
        stream: list[int] = []
        for ids in tokenizer([r["text"] for r in rows], add_special_tokens=True, verbose=False)["input_ids"]:
            stream += ids
        n = self.seq_len
        blocks = [stream[i : i + n] for i in range(0, len(stream) - n + 1, n)]
        return Encoded(blocks, [0] * len(blocks), token_labels=blocks)

    def batch(self, enc: Encoded, idx: list[int], pad_id: int) -> dict:
        return collate(enc, idx, pad_id)

    def predicted_tokens(self, enc: Encoded) -> list[int]:
        return token_targets(enc)

    def loss(self, net, batch: dict, weights):
        return token_loss(net, batch, weights, self.chunked_ce)

    def validate(self, model, val: Encoded, pad_id: int, batch_size: int = 64) -> dict[str, float]:
        return token_validate(model, val, pad_id, batch_size, self.chunked_ce)

    def build_model(self, spec: ModelSpec, tokenizer):
        from trainforge.models.presets import build_causal_lm
        from trainforge.models.tokenizer import special_ids

        target = spec.model
        if spec.run_dir is not None:  # `pretrain` or a directory: the resolved path
            from trainforge.models.presets import resolve_model

            resolved = resolve_model(spec.model, spec.run_dir)
            target = str(resolved) if isinstance(resolved, Path) else spec.model
        return build_causal_lm(target, len(tokenizer), spec.max_length, spec.dropout, special_ids(tokenizer),
                               overrides_key=spec.overrides_key, **spec.overrides)

    def load_model(self, model_dir: Path, **kwargs):
        from trainforge.models.load import load_causal_lm

        return load_causal_lm(model_dir, **kwargs)

    def model_info(self, spec: ModelSpec, model, method: str | None, adapter: bool) -> ModelInfo:
        from trainforge.tasks.info import architecture_of

        return ModelInfo(self.name, *architecture_of(model), max_length=spec.max_length, method=method, adapter=adapter)

    def samples(self, model, tokenizer, val_rows: list[dict]) -> list[dict]:
        """Example outputs to keep beside the model after training (none for this task)."""
        return []

    def write_samples(self, samples: list[dict], model_dir: Path) -> dict:
        return {}

    def evaluate(self, job: EvalJob) -> dict[str, float]:
        from trainforge.evaluate.lm import evaluate_lm

        return evaluate_lm(job, prompt_format=None)

    @classmethod
    def from_info(cls, info: ModelInfo) -> "CausalLMTask":
        return cls(info.max_length or 512)
