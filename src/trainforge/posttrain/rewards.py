"""Reward functions for GRPO and for filtering distilled traces: one signature, named by dotted path.

    fn(prompts: list[str], completions: list[str], **columns) -> list[float | None]

`columns` are the records' other fields, one list per field aligned with `prompts` (`reference`, `label`,
anything the data carries); a function takes what it needs and ignores the rest (`**_`). None means "this
function does not apply to this sample" (TRL's convention): the weighted sum runs over the functions that
answered, and a sample no function answered is skipped (no advantage, no loss, not in the group statistics).

Built-ins (short names in config, or the full path `trainforge.posttrain.rewards:exact_answer`):

    exact_answer   1 if the final answer (\\boxed{…}, else <answer>…</answer>, else the last number) equals
                   the record's `reference` numerically (or as text when not a number); None without one
    label_match    1 if the answer (<answer>…</answer>, else the whole completion) is the record's label
                   (`reference`, else `label`); for classification prompts ("answer 正面 or 负面")
    think_format   1 if the completion is <think>…</think><answer>…</answer> and nothing else
    length_penalty −(characters over `max_chars`) / max_chars, at most 0 and at least −1 (0 when short enough)
"""

from __future__ import annotations

import importlib
import math
import re
from dataclasses import dataclass
from typing import Callable

from trainforge.errors import UserError

_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.S)
_NUMBER = re.compile(r"-?\d+(?:[.,]\d+)*")
_FORMAT = re.compile(r"^\s*<think>.*?</think>\s*<answer>.*?</answer>\s*$", re.S)


def final_answer(completion: str) -> str | None:
    """The completion's final answer: the last \\boxed{…}, else the last <answer>…</answer>, else the last number."""
    for pattern in (_BOXED, _ANSWER):
        found = pattern.findall(completion)
        if found:
            return found[-1].strip()
    numbers = _NUMBER.findall(completion)
    return numbers[-1] if numbers else None


def _as_number(text: str) -> float | None:
    numbers = _NUMBER.findall(text)
    if len(numbers) != 1:
        return None
    try:
        return float(numbers[0].replace(",", ""))
    except ValueError:
        return None


def answers_match(answer: str | None, reference: str) -> bool:
    if answer is None:
        return False
    a, r = _as_number(answer), _as_number(str(reference))
    if a is not None and r is not None:
        return math.isclose(a, r, rel_tol=0, abs_tol=1e-9)
    return answer.strip() == str(reference).strip()


def exact_answer(prompts, completions, reference=None, **_) -> list[float | None]:
    refs = reference if reference is not None else [None] * len(completions)
    return [None if r is None else float(answers_match(final_answer(c), r)) for c, r in zip(completions, refs)]


def label_match(prompts, completions, reference=None, label=None, **_) -> list[float | None]:
    refs = reference if reference is not None else label if label is not None else [None] * len(completions)
    out: list[float | None] = []
    for c, r in zip(completions, refs):
        if r is None:
            out.append(None)
            continue
        found = _ANSWER.findall(c)
        out.append(float((found[-1] if found else c).strip() == str(r).strip()))
    return out


def think_format(prompts, completions, **_) -> list[float | None]:
    return [float(bool(_FORMAT.match(c))) for c in completions]


def length_penalty(prompts, completions, max_chars: int = 200, **_) -> list[float | None]:
    return [-min(1.0, max(0, len(c) - max_chars) / max_chars) for c in completions]


BUILTIN = {f.__name__: f for f in (exact_answer, label_match, think_format, length_penalty)}


def load_reward(name: str) -> Callable:
    """A built-in's short name, or `package.module:function` / `package.module.function`."""
    if name in BUILTIN:
        return BUILTIN[name]
    module, sep, attr = name.partition(":") if ":" in name else name.rpartition(".")
    if not sep or not module or not attr:
        raise UserError(f"grpo.rewards: {name!r} is neither a built-in ({', '.join(BUILTIN)}) nor a dotted path "
                        f"like mypackage.rewards:my_reward")
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise UserError(f"grpo.rewards: cannot load {name!r} ({e}); check the module is importable (PYTHONPATH)") from None
    if not callable(fn):
        raise UserError(f"grpo.rewards: {name!r} is not callable")
    return fn


@dataclass
class Reward:
    """One weighted reward function; `kwargs` are passed to every call (e.g. length_penalty's max_chars)."""

    name: str
    fn: Callable
    weight: float = 1.0
    kwargs: dict | None = None


def build_rewards(specs) -> list[Reward]:
    """From grpo.rewards entries (RewardSpec: name, weight, kwargs)."""
    return [Reward(s.name, load_reward(s.name), s.weight, dict(s.kwargs)) for s in specs]


@dataclass
class Scores:
    total: list[float | None]
    """Weighted sum over the functions that answered; None where none did (the sample is skipped)."""
    per_function: dict[str, list[float | None]]


def score(rewards: list[Reward], prompts: list[str], completions: list[str], columns: dict[str, list]) -> Scores:
    """Call every reward function once on the whole batch (columns: field → one value per sample)."""
    per: dict[str, list[float | None]] = {}
    for r in rewards:
        got = r.fn(prompts, completions, **columns, **(r.kwargs or {}))
        got = list(got)
        if len(got) != len(completions):
            raise UserError(f"grpo.rewards: {r.name} returned {len(got)} rewards for {len(completions)} completions; "
                            f"a reward function returns one float (or None) per completion")
        per[r.name] = [None if v is None else float(v) for v in got]
    total: list[float | None] = []
    for i in range(len(completions)):
        answered = [(r.weight, per[r.name][i]) for r in rewards if per[r.name][i] is not None]
        total.append(sum(w * v for w, v in answered) if answered else None)
    return Scores(total, per)
