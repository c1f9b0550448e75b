"""Preference pairs: (prompt, chosen, rejected), from three kinds of data, framed as SFT frames prompts.

    given      records with `prompt`, `chosen`, `rejected` (data/io.py reads them): strings, or chat messages
               (prompt: the conversation so far; chosen / rejected: the assistant's turn, TRL's conversational form)
    labelled   a labelled record (the reviews): prompt = the SFT template over its text, chosen = its label's
               answer (label_names), rejected = each other label's answer — one pair per wrong label
    sampled    several answers sampled per prompt, scored by a judge named by dotted path,
               `judge(prompts, completions, **columns) -> list[float | None]` (the GRPO reward signature);
               the best becomes chosen and the worst rejected; a prompt whose scores all tie gives no pair
               (counted `all_tied`), a None score drops that answer (counted `unscored`)

Encoding is the SFT task's (tasks/sft.py): the prompt through the tokenizer's chat template with the generation
prompt, the answer's tokens and </s>; a long prompt loses its start, the answer stays whole. So a DPO model is
asked exactly as its SFT model was trained and as eval and serve ask it.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from trainforge.errors import UserError

if TYPE_CHECKING:
    from trainforge.tasks.info import PromptFormat

Messages = list[dict]


@dataclass
class PreferencePair:
    prompt: str | Messages
    chosen: str
    rejected: str
    id: Any = None


@dataclass
class EncodedPairs:
    """Token ids per pair: the shared prompt and each answer (its </s> included)."""

    prompt: list[list[int]]
    chosen: list[list[int]]
    rejected: list[list[int]]
    ids: list[Any] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.prompt)

    def fingerprint(self) -> str:
        """sha256 of every token id: stored reference log-probs belong to exactly these pairs."""
        h = hashlib.sha256()
        for p, c, r in zip(self.prompt, self.chosen, self.rejected):
            h.update(json.dumps([p, c, r]).encode())
        return h.hexdigest()


def _answer_text(value, where: str) -> str:
    """A completion given as a string, or as chat messages (the assistant's turn: its last message)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and isinstance(value[-1], dict) and "content" in value[-1]:
        if value[-1].get("role", "assistant") != "assistant":
            raise UserError(f"{where}: the last message of a chosen/rejected conversation must be the assistant's "
                            f"(got role {value[-1].get('role')!r})")
        return str(value[-1]["content"])
    raise UserError(f"{where}: chosen and rejected must be strings or lists of {{role, content}} messages")


def pairs_from_records(rows: list[dict], prompt_field: str = "prompt", chosen_field: str = "chosen",
                       rejected_field: str = "rejected") -> list[PreferencePair]:
    """Records that already hold a prompt, a chosen and a rejected answer."""
    out = []
    for n, row in enumerate(rows):
        where = f"record {row.get('id', n)}"
        missing = [f for f in (prompt_field, chosen_field, rejected_field) if row.get(f) in (None, "", [])]
        if missing:
            raise UserError(f"train.dpo.pairs=given: {where} has no {', '.join(missing)}; give every record "
                            f"{prompt_field}/{chosen_field}/{rejected_field}, or use train.dpo.pairs=labels")
        prompt = row[prompt_field]
        if not isinstance(prompt, (str, list)):
            raise UserError(f"{where}: {prompt_field} must be a string or a list of {{role, content}} messages")
        out.append(PreferencePair(prompt, _answer_text(row[chosen_field], where), _answer_text(row[rejected_field], where),
                                  row.get("id", n)))
    return out


def pairs_from_labels(rows: list[dict], fmt: PromptFormat) -> tuple[list[PreferencePair], Counter]:
    """The correct label's answer chosen, every other label's answer rejected (one pair per wrong label).
    Labels come from the records and `fmt.label_names` (label → answer text, e.g. positive → 正面).
    Returns (pairs, dropped reasons): a record without a label is counted `no_label`."""
    from trainforge.chat import prompt_and_response

    labels = sorted({str(r["label"]) for r in rows if r.get("label") is not None} | set(fmt.label_names))
    if len(labels) < 2:
        raise UserError(f"train.dpo.pairs=labels needs at least two labels to make a rejected answer (found {labels}); "
                        f"set train.sft.label_names or give prompt/chosen/rejected records (train.dpo.pairs=given)")
    answers = {lab: str(fmt.label_names.get(lab, lab)) for lab in labels}
    pairs, dropped = [], Counter()
    for n, row in enumerate(rows):
        if row.get("label") is None:
            dropped["no_label"] += 1
            continue
        prompt, chosen = prompt_and_response({k: v for k, v in row.items() if k != fmt.response_field}, fmt)
        for lab in labels:
            if lab != str(row["label"]) and answers[lab] != chosen:
                pairs.append(PreferencePair(prompt, chosen, answers[lab], row.get("id", n)))
    return pairs, dropped


def load_judge(path: str, key: str = "train.dpo.judge"):
    """A function named by dotted path, `package.module:function` or `package.module.function`."""
    module_name, _, attr = path.partition(":") if ":" in path else path.rpartition(".")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as e:
        raise UserError(f"{key}: cannot import {path!r} ({e}); give 'package.module:function' on the PYTHONPATH") from None
    if not callable(fn):
        raise UserError(f"{key}: {path!r} is not a function")
    return fn


def pairs_from_samples(rows: list[dict], prompts: list[str], sample, judge, n: int, key: str = "train.dpo.judge"
                       ) -> tuple[list[PreferencePair], Counter]:
    """n answers per prompt from `sample(prompts, n) -> list[list[str]]`, scored by
    `judge(prompts, completions, **columns) -> list[float | None]` (columns: the records' other fields,
    one value per completion). Best → chosen, worst → rejected."""
    answers = sample(prompts, n)
    flat_prompts = [p for p, a in zip(prompts, answers) for _ in a]
    flat_answers = [c for a in answers for c in a]
    columns: dict[str, list] = {}
    for col in sorted({k for r in rows for k in r}):
        columns[col] = [r.get(col) for r, a in zip(rows, answers) for _ in a]
    scores = list(judge(flat_prompts, flat_answers, **columns))
    if len(scores) != len(flat_answers):
        raise UserError(f"{key}: returned {len(scores)} scores for {len(flat_answers)} completions; return one per completion")
    pairs, dropped, at = [], Counter(), 0
    for i, (row, prompt, group) in enumerate(zip(rows, prompts, answers)):
        scored = [(s, c) for s, c in zip(scores[at : at + len(group)], group) if s is not None]
        dropped["unscored"] += len(group) - len(scored)
        at += len(group)
        if len(scored) < 2 or max(s for s, _ in scored) == min(s for s, _ in scored):
            dropped["all_tied" if len(scored) >= 2 else "too_few_scored"] += 1
            continue
        best = max(scored, key=lambda sc: sc[0])  # the first best / first worst: deterministic
        worst = min(scored, key=lambda sc: sc[0])
        pairs.append(PreferencePair(prompt, best[1], worst[1], row.get("id", i)))
    return pairs, dropped


def generate_samples(model, tokenizer, max_new_tokens: int, temperature: float = 1.0, seed: int = 0):
    """`sample(prompts, n)` for pairs_from_samples: n sampled answers per chat-framed prompt (model.generate)."""
    import torch

    def sample(prompts: list[str], n: int) -> list[list[str]]:
        model.eval()
        device = next(model.parameters()).device
        gen = torch.Generator().manual_seed(seed)  # sampling draws from the global RNG; seed it, then restore
        state = torch.random.get_rng_state()
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
        out = []
        try:
            for p in prompts:
                ids = torch.tensor([prompt_ids_of(tokenizer, p)], device=device)
                with torch.no_grad():
                    g = model.generate(input_ids=ids.repeat(n, 1), attention_mask=torch.ones_like(ids).repeat(n, 1),
                                       do_sample=True, temperature=temperature, max_new_tokens=max_new_tokens,
                                       pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
                out.append([tokenizer.decode(row[ids.shape[1]:], skip_special_tokens=True).strip() for row in g])
        finally:
            torch.random.set_rng_state(state)
        return out

    return sample


def prompt_ids_of(tokenizer, prompt: str | Messages) -> list[int]:
    """A prompt (a string: one user turn; or the messages so far) through the chat template, ready for the answer."""
    from trainforge.chat import prompt_ids

    if isinstance(prompt, str):
        return prompt_ids(tokenizer, prompt)
    return tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True, return_dict=False)


def encode_pairs(pairs: list[PreferencePair], tokenizer, max_length: int) -> EncodedPairs:
    """As tasks/sft.py encodes an example: each answer + </s> kept whole, the prompt's start cut to fit max_length."""
    enc = EncodedPairs([], [], [], [])
    for pair in pairs:
        p = prompt_ids_of(tokenizer, pair.prompt)
        c = tokenizer(pair.chosen, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        r = tokenizer(pair.rejected, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        longest = max(len(c), len(r))
        keep = max(1, max_length - longest)
        enc.prompt.append(p[-keep:])
        enc.chosen.append(c[: max_length - 1])
        enc.rejected.append(r[: max_length - 1])
        enc.ids.append(pair.id)
    return enc
