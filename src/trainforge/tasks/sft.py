"""Instruction SFT: chat-framed prompt + response, loss on the response tokens only; then generate.

    tokens   <s><|user|>\\n{prompt}\\n<|assistant|>\\n   {response}</s>
    targets  -100 … -100 (no loss on the prompt)          {response}</s>

The framing is the tokenizer's chat template (saved in tokenizer_config.json), so serving and
`apply_chat_template` build prompts exactly as training saw them. A record gives its prompt and
response fields, or (a labelled dataset) its text through the template and its label, mapped
through label_names, as the answer. That mapping is the task's `PromptFormat`, saved in
model/trainforge.json so eval scores answers framed exactly as training framed them.

Loss and validation are the causal LM's (tasks/causal_lm.py): token-level, normalised over the
global batch's response tokens.

Packing (train.packing, padding-free): a micro-batch's examples become ONE row, no padding and no
attention_mask; position_ids restart at 0 per example, so the attention kernel keeps them apart
(flash_attention_2 reads varlen boundaries from them; transformers' masking_utils builds a
block-diagonal causal mask for sdpa/eager). Each example's first label is -100, so the token that
ends one example never predicts the next one's first; the target count is the padded batch's.

    padded   [p p r r </s> pad pad]     packed   [p p r r </s> p r </s> …]   1 × Σ lengths
             [p r </s> pad pad pad pad]          position_ids 0 1 2 3 4 0 1 2 …
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from trainforge.batching import Encoded, collate
from trainforge.chat import generate_examples, prompt_and_response, prompt_ids, write_generations  # noqa: F401
from trainforge.tasks.base import EvalJob, ModelSpec
from trainforge.tasks.causal_lm import token_loss, token_targets, token_validate
from trainforge.tasks.info import ModelInfo, PromptFormat


@dataclass
class SFTTask:
    fmt: PromptFormat = field(default_factory=PromptFormat)
    max_length: int = 128
    sample_count: int = 32
    """Validation prompts answered greedily after training (model/generations.jsonl)."""
    chunked_ce: int | None = None
    """Tokens per chunk of the chunked cross-entropy (train.chunked_ce); None: the model's own loss."""
    packing: bool = False
    """Train on padding-free packed micro-batches (train.packing); validation stays padded."""

    name: ClassVar[str] = "sft"
    peft_task_type: ClassVar[str] = "CAUSAL_LM"
    serves_as: ClassVar[str] = "generator"
    token_level: ClassVar[bool] = True
    selection: ClassVar[tuple[str, bool]] = ("val_loss", False)
    compressible: ClassVar[bool] = False

    @classmethod
    def from_config(cls, cfg) -> "SFTTask":
        """From the train: section (train/config.py TrainConfig)."""
        s = cfg.sft
        return cls(PromptFormat(s.prompt_field, s.response_field, s.template, dict(s.label_names), s.max_new_tokens),
                   cfg.max_length, s.generate_examples, cfg.chunked_ce, cfg.packing)

    def prepare_tokenizer(self, tokenizer) -> None:
        """The chat framing SFT trains with, unless the tokenizer brings its own."""
        from trainforge.models.tokenizer import CHAT_TEMPLATE

        tokenizer.chat_template = tokenizer.chat_template or CHAT_TEMPLATE

    def encode(self, rows: list[dict], tokenizer, held_out: bool = False) -> Encoded:
        ids, targets = [], []
        for row in rows:
            prompt, response = prompt_and_response(row, self.fmt)
            p = prompt_ids(tokenizer, prompt)
            r = tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
            p = p[-max(1, self.max_length - len(r)):]  # keep the answer whole; cut the prompt's start if too long
            seq = (p + r)[: self.max_length]
            ids.append(seq)
            targets.append(([-100] * len(p) + r)[: self.max_length])
        return Encoded(ids, [0] * len(ids), token_labels=targets)

    def batch(self, enc: Encoded, idx: list[int], pad_id: int) -> dict:
        if not self.packing:
            return collate(enc, idx, pad_id)
        from transformers import DataCollatorWithFlattening

        # input_ids, labels (-100 at each example's start), position_ids, each 1 × Σ lengths; no attention_mask, which
        # is what makes masking_utils look for packed sequences in position_ids. use_cache=False: with a KV cache
        # (config.use_cache defaults on, even in train mode) transformers 5 skips that detection and sdpa/eager would
        # let the examples attend across their boundaries, silently.
        packed = DataCollatorWithFlattening()([{"input_ids": enc.input_ids[i], "labels": enc.token_labels[i]} for i in idx])
        return {**packed, "use_cache": False}

    def predicted_tokens(self, enc: Encoded) -> list[int]:
        return token_targets(enc)

    def loss(self, net, batch: dict, weights):
        return token_loss(net, batch, weights, self.chunked_ce)

    def validate(self, model, val: Encoded, pad_id: int, batch_size: int = 64) -> dict[str, float]:
        return token_validate(model, val, pad_id, batch_size, self.chunked_ce)

    def build_model(self, spec: ModelSpec, tokenizer):
        from trainforge.tasks.causal_lm import CausalLMTask

        return CausalLMTask(spec.max_length).build_model(spec, tokenizer)

    def load_model(self, model_dir: Path, **kwargs):
        from trainforge.models.load import load_causal_lm

        return load_causal_lm(model_dir, **kwargs)

    def model_info(self, spec: ModelSpec, model, method: str | None, adapter: bool) -> ModelInfo:
        from trainforge.tasks.info import architecture_of

        return ModelInfo(self.name, *architecture_of(model), max_length=spec.max_length, prompt_format=self.fmt,
                         method=method, adapter=adapter)

    def samples(self, model, tokenizer, val_rows: list[dict]) -> list[dict]:
        """Greedy answers to the first validation prompts, beside the expected ones."""
        return generate_examples(model, tokenizer, val_rows, self.fmt, self.sample_count)

    def write_samples(self, samples: list[dict], model_dir: Path) -> dict:
        return write_generations(samples, Path(model_dir) / "generations.jsonl")

    def evaluate(self, job: EvalJob) -> dict[str, float]:
        from trainforge.evaluate.lm import evaluate_lm

        return evaluate_lm(job, prompt_format=self.fmt)

    @classmethod
    def from_info(cls, info: ModelInfo) -> "SFTTask":
        return cls(info.prompt_format or PromptFormat(), info.max_length or 512)
