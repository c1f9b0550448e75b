"""Prompt framing for instruction-tuned models: record → (prompt, expected answer) → chat-templated ids → greedy answer.

Shared by the SFT task (training and its samples) and the LM evaluation, so both frame a prompt the same way.
A `PromptFormat` (tasks/info.py, saved in model/trainforge.json) says which fields hold the prompt and the
answer, or how a labelled text becomes a prompt (template) and its label an answer (label_names).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from trainforge.errors import UserError

if TYPE_CHECKING:
    from trainforge.tasks.info import PromptFormat


def prompt_and_response(row: dict, fmt: PromptFormat) -> tuple[str, str]:
    prompt = row.get(fmt.prompt_field) or fmt.template.format(text=row.get("text", ""))
    response = row.get(fmt.response_field)
    if response is None:
        if "label" not in row:
            raise UserError(f"train.task=sft: record {row.get('id')} has neither '{fmt.response_field}' nor a label to answer with")
        response = fmt.label_names.get(row["label"], row["label"])
    return prompt, str(response)


def prompt_ids(tokenizer, prompt: str) -> list[int]:
    return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=True,
                                         return_dict=False)


def generate_examples(model, tokenizer, rows: list[dict], fmt: PromptFormat, n: int) -> list[dict]:
    """Greedy answers for the first n prompts, beside the expected answer."""
    import torch

    model.eval()
    out = []
    for row in rows[:n]:
        prompt, expected = prompt_and_response(row, fmt)
        ids = torch.tensor([prompt_ids(tokenizer, prompt)], device=next(model.parameters()).device)
        with torch.no_grad():
            gen = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=fmt.max_new_tokens,
                                 do_sample=False, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        answer = tokenizer.decode(gen[0, ids.shape[1]:], skip_special_tokens=True).strip()
        out.append({"id": row.get("id"), "prompt": prompt, "expected": expected, "generated": answer})
    return out


def write_generations(generations: list[dict], path: Path) -> dict:
    path.write_text("".join(json.dumps(g, ensure_ascii=False) + "\n" for g in generations), encoding="utf-8")
    exact = sum(g["generated"] == g["expected"] for g in generations)
    return {"generate_exact_match": round(exact / max(1, len(generations)), 4), "generated": len(generations)}
