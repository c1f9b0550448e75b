"""Perturbation suites: rewrites a real user makes without meaning to change the label.

    typos        CJK: ~10% of characters swapped for a homophone (a pinyin-IME slip);
                 Latin: ~10% of words get two inner letters swapped
    punctuation  every punctuation mark removed
    width        half-width ASCII ↔ full-width forms (Ａ, ！, ，): what NFKC normalisation undoes,
                 so this finds models trained without it
    whitespace   a space after ~15% of characters, existing spaces doubled
Each suite reports accuracy on the same examples before and after, and how many predictions flipped.
"""

from __future__ import annotations

import random
import re
import unicodedata
from typing import Callable

import numpy as np

from trainforge.evaluate.substitutes import CJK_CHAR

_LATIN_WORD = re.compile(r"[A-Za-z]{4,}")


def typos(text: str, rng: random.Random, homophones: Callable[[str, int], list[str]]) -> str:
    chars = list(text)
    for i, ch in enumerate(chars):
        if CJK_CHAR.match(ch) and rng.random() < 0.1:
            options = homophones(ch, 5)
            if options:
                chars[i] = rng.choice(options)
    out = "".join(chars)

    def swap(m: re.Match) -> str:
        w = m.group(0)
        if rng.random() >= 0.1:
            return w
        j = rng.randrange(1, len(w) - 2)
        return w[:j] + w[j + 1] + w[j] + w[j + 2 :]

    return _LATIN_WORD.sub(swap, out)


def drop_punctuation(text: str, rng: random.Random, homophones=None) -> str:
    return "".join(c for c in text if not unicodedata.category(c).startswith("P"))


def flip_width(text: str, rng: random.Random, homophones=None) -> str:
    """U+0021..U+007E ↔ U+FF01..U+FF5E, space ↔ ideographic space."""
    out = []
    for c in text:
        o = ord(c)
        if 0x21 <= o <= 0x7E:
            out.append(chr(o + 0xFEE0))
        elif 0xFF01 <= o <= 0xFF5E:
            out.append(chr(o - 0xFEE0))
        elif c == " ":
            out.append("\u3000")
        elif c == "\u3000":
            out.append(" ")
        else:
            out.append(c)
    return "".join(out)


def add_whitespace(text: str, rng: random.Random, homophones=None) -> str:
    return "".join(c + (" " if c == " " or rng.random() < 0.15 else "") for c in text)


SUITES: dict[str, Callable] = {"typos": typos, "punctuation": drop_punctuation, "width": flip_width, "whitespace": add_whitespace}


def run_suites(rows: list[dict], y_true: np.ndarray, y_pred: np.ndarray, labels: list[str], probs_of: Callable,
               homophones: Callable[[str, int], list[str]], n: int, seed: int) -> dict:
    """{suite: {n, changed, accuracy_clean, accuracy_perturbed, flip_rate, examples}} on one seeded sample."""
    sample = sorted(random.Random(seed).sample(range(len(rows)), min(n, len(rows))))
    truth, clean = y_true[sample], y_pred[sample]
    out = {}
    for name, fn in SUITES.items():
        rng = random.Random(seed)
        texts = [fn(rows[i]["text"], rng, homophones) for i in sample]
        pred = probs_of(texts).argmax(1)
        flips = np.flatnonzero(pred != clean)
        out[name] = {
            "n": len(sample),
            "changed": int(sum(t != rows[i]["text"] for t, i in zip(texts, sample))),
            "accuracy_clean": round(float((clean == truth).mean()), 5) if sample else None,
            "accuracy_perturbed": round(float((pred == truth).mean()), 5) if sample else None,
            "flip_rate": round(len(flips) / max(1, len(sample)), 5),
            "examples": [
                {"id": rows[sample[j]]["id"], "label": labels[truth[j]], "pred_before": labels[clean[j]],
                 "pred_after": labels[pred[j]], "original": rows[sample[j]]["text"][:200], "perturbed": texts[j][:200]}
                for j in flips[:3]
            ],
        }
    return out
