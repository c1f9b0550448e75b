"""GRPO rollouts through serve's batched KV-cache decoder, and the padded batch the loss reads.

    prompts × G ──▶ serve/batching.generate_batch (left-padded prefill, one token per step, a
                    torch.Generator per row seeded from the recipe's RNG) ──▶ completion token ids

    loss batch   [pad pad p p p | c c c </s> pad]      attention_mask 0 for every pad
                 [p p p p p     | c </s> pad pad pad]  position_ids   count real tokens only
                  left-padded      right-padded        completion_mask 1 on c and </s>

The same left padding, masks and position ids as the server: a prompt's tokens sit at the same positions
whatever the batch (tests/posttrain/test_grpo_rollouts.py proves batched = one at a time, greedy and
seeded sampling, and the batched log-probs = each sequence's alone). The end-of-sequence token is part
of a finished completion (the policy learns to stop); a completion cut at max_new_tokens has none.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Rollouts:
    prompt_ids: list[list[int]]
    completion_ids: list[list[int]]
    """With the end-of-sequence token when the sample stopped by itself."""
    finished: list[bool]
    texts: list[str]
    """Decoded completions (no special tokens): what the reward functions read."""


def engine_for(model, tokenizer):
    """serve's GeneratorEngine around a model already in memory (the policy being trained)."""
    from trainforge.serve.engine import GeneratorEngine

    eos = model.generation_config.eos_token_id if getattr(model, "generation_config", None) else None
    eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    if tokenizer.eos_token_id is not None:
        eos_ids.add(tokenizer.eos_token_id)
    return GeneratorEngine(model, tokenizer, eos_ids)


def generate(model, tokenizer, prompt_ids: list[list[int]], max_new_tokens: int, temperature: float, top_p: float,
             seeds: list[int], batch_size: int = 64, ignore_eos: bool = False) -> Rollouts:
    """One completion per prompt (repeat a prompt G times for a group), `batch_size` rows per decode wave.
    ignore_eos: decode all max_new_tokens (benchmarks: the same work as generate(min_new_tokens=…))."""
    from trainforge.serve.batching import GenRequest, generate_batch

    engine = engine_for(model, tokenizer)
    if ignore_eos:
        engine.eos_ids = set()
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else next(iter(engine.eos_ids))
    was_training = model.training
    model.eval()
    completions, finished = [], []
    try:
        for start in range(0, len(prompt_ids), batch_size):
            reasons: list[str] = []
            reqs = []
            for ids, seed in zip(prompt_ids[start : start + batch_size], seeds[start : start + batch_size]):
                slot = len(reasons)
                reasons.append("length")

                def emit(event, slot=slot):
                    if event[0] == "done":
                        reasons[slot] = event[1]
                    elif event[0] == "error":
                        raise event[1]
                reqs.append(GenRequest(list(ids), max_new_tokens, temperature, top_p, seed, emit=emit))
            for ids, reason in zip(generate_batch(engine, reqs), reasons):
                stopped = reason == "stop"
                completions.append(list(ids) + ([eos] if stopped else []))
                finished.append(stopped)
    finally:
        model.train(was_training)
    texts = [tokenizer.decode(c, skip_special_tokens=True) for c in completions]
    return Rollouts([list(p) for p in prompt_ids], completions, finished, texts)


@dataclass
class LossBatch:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    completion_mask: torch.Tensor
    prompt_width: int

    def rows(self, idx) -> "LossBatch":
        """The rows `idx`, still [prompt_width | completion] wide (the layout token_logprobs reads)."""
        return LossBatch(self.input_ids[idx], self.attention_mask[idx], self.position_ids[idx],
                         self.completion_mask[idx], self.prompt_width)

    def to(self, device) -> "LossBatch":
        return LossBatch(self.input_ids.to(device), self.attention_mask.to(device), self.position_ids.to(device),
                         self.completion_mask.to(device), self.prompt_width)


def loss_batch(prompt_ids: list[list[int]], completion_ids: list[list[int]], pad_id: int) -> LossBatch:
    """[left-padded prompt | right-padded completion] with masks and position ids (module docstring)."""
    n = len(prompt_ids)
    pw = max(map(len, prompt_ids))
    cw = max(1, max(map(len, completion_ids)))
    ids = torch.full((n, pw + cw), pad_id, dtype=torch.long)
    mask = torch.zeros((n, pw + cw), dtype=torch.long)
    cmask = torch.zeros((n, cw), dtype=torch.long)
    for i, (p, c) in enumerate(zip(prompt_ids, completion_ids)):
        ids[i, pw - len(p) : pw] = torch.tensor(p, dtype=torch.long)
        mask[i, pw - len(p) : pw] = 1
        if c:
            ids[i, pw : pw + len(c)] = torch.tensor(c, dtype=torch.long)
            mask[i, pw : pw + len(c)] = 1
            cmask[i, : len(c)] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return LossBatch(ids, mask, positions, cmask, pw)
