"""Instruction SFT data: chat-framed prompt + response, loss on the response tokens only; then generate.

    tokens   <s><|user|>\\n{prompt}\\n<|assistant|>\\n   {response}</s>
    targets  -100 … -100 (no loss on the prompt)          {response}</s>

The framing is the tokenizer's chat template (saved in tokenizer_config.json), so serving and
`apply_chat_template` build prompts exactly as training saw them. A record gives its prompt and
response fields, or (a labelled dataset) its text through `train.sft.template` and its label,
mapped through `train.sft.label_names`, as the answer.
"""

from __future__ import annotations

import json
from pathlib import Path

from trainforge.errors import UserError
from trainforge.train.config import TrainConfig


def prompt_and_response(row: dict, cfg: TrainConfig) -> tuple[str, str]:
    s = cfg.sft
    prompt = row.get(s.prompt_field) or s.template.format(text=row.get("text", ""))
    response = row.get(s.response_field)
    if response is None:
        if "label" not in row:
            raise UserError(f"train.task=sft: record {row.get('id')} has neither '{s.response_field}' nor a label to answer with")
        response = s.label_names.get(row["label"], row["label"])
    return prompt, str(response)


def prompt_ids(tokenizer, prompt: str) -> list[int]:
    return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=True,
                                         return_dict=False)


def encode(tokenizer, rows: list[dict], cfg: TrainConfig):
    from trainforge.batching import Encoded

    ids, targets = [], []
    for row in rows:
        prompt, response = prompt_and_response(row, cfg)
        p = prompt_ids(tokenizer, prompt)
        r = tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        p = p[-max(1, cfg.max_length - len(r)):]  # keep the answer whole; cut the prompt's start if too long
        seq = (p + r)[: cfg.max_length]
        ids.append(seq)
        targets.append(([-100] * len(p) + r)[: cfg.max_length])
    return Encoded(ids, [0] * len(ids), token_labels=targets)


def generate_examples(model, tokenizer, rows: list[dict], cfg: TrainConfig) -> list[dict]:
    """Greedy answers for the first N val prompts, beside the expected answer."""
    import torch

    model.eval()
    out = []
    for row in rows[: cfg.sft.generate_examples]:
        prompt, expected = prompt_and_response(row, cfg)
        ids = torch.tensor([prompt_ids(tokenizer, prompt)])
        with torch.no_grad():
            gen = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=cfg.sft.max_new_tokens,
                                 do_sample=False, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        answer = tokenizer.decode(gen[0, ids.shape[1]:], skip_special_tokens=True).strip()
        out.append({"id": row.get("id"), "prompt": prompt, "expected": expected, "generated": answer})
    return out


def write_generations(generations: list[dict], path: Path) -> dict:
    path.write_text("".join(json.dumps(g, ensure_ascii=False) + "\n" for g in generations), encoding="utf-8")
    exact = sum(g["generated"] == g["expected"] for g in generations)
    return {"generate_exact_match": round(exact / max(1, len(generations)), 4), "generated": len(generations)}
