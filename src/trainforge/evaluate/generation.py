"""Generation metrics: perplexity, BLEU (sacrebleu), ROUGE-1/2/L (rouge-score), exact match.

Chinese needs care in two places:
- BLEU: sacrebleu's default "13a" tokenizer splits on spaces, so an unsegmented Chinese sentence
  is one token and BLEU collapses to 0 or 100. Its "zh" tokenizer splits CJK characters; we pick
  it whenever the references contain CJK (the same choice sacrebleu's CLI makes for -l *-zh).
- ROUGE: rouge-score's default tokenizer lowercases and then replaces every character outside
  [a-z0-9] with a space, so Chinese text silently becomes zero tokens and every score is 0.0.
  `CjkAwareTokenizer` keeps runs of other letters and digits as words (so Latin, Cyrillic and digits
  are words) and makes each CJK character a token of its own, the usual character-level ROUGE for Chinese.
"""

from __future__ import annotations

import math
import re
import unicodedata

from trainforge.text_scripts import CJK_WITH_KANA_HANGUL as _CJK  # ideographs, kana, hangul: a token per character

_CJK_RE = re.compile(f"[{_CJK}]")
# a CJK character, or a run of other letters/digits (ASCII runs are exactly rouge-score's tokens)
_TOKEN_RE = re.compile(f"[{_CJK}]|[^\\W_{_CJK}]+")


def has_cjk(text: str) -> bool:
    return bool(_CJK_RE.search(text))


class CjkAwareTokenizer:
    """A rouge-score tokenizer (anything with `tokenize(text) -> list[str]`).

    For text without CJK it gives exactly the tokens of rouge-score's default tokenizer
    (lowercase, runs of [a-z0-9]), so English scores are unchanged; a test holds it to that.
    """

    def tokenize(self, text: str) -> list[str]:
        text = unicodedata.normalize("NFKC", text).lower()
        return _TOKEN_RE.findall(text)


def rouge(predictions: list[str], references: list[str]) -> dict[str, float]:
    """Mean ROUGE-1/2/L F-measure over the pairs, with the CJK-aware tokenizer."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], tokenizer=CjkAwareTokenizer())
    totals = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    for pred, ref in zip(predictions, references, strict=True):
        scores = scorer.score(ref, pred)  # rouge-score's order: (target, prediction)
        for k in totals:
            totals[k] += scores[k].fmeasure
    n = max(1, len(predictions))
    return {k: v / n for k, v in totals.items()}


def bleu_tokenizer(references: list[str]) -> str:
    return "zh" if any(has_cjk(r) for r in references) else "13a"


def bleu(predictions: list[str], references: list[str]) -> dict[str, float | str]:
    """Corpus BLEU (0–100) by sacrebleu, one reference per prediction."""
    import sacrebleu

    tokenize = bleu_tokenizer(references)
    score = sacrebleu.corpus_bleu(predictions, [references], tokenize=tokenize)
    return {"bleu": float(score.score), "bleu_tokenizer": tokenize}


def normalize_for_match(text: str) -> str:
    """NFKC (full-width → half-width), collapse whitespace, strip, lowercase."""
    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


def exact_match(predictions: list[str], references: list[str]) -> float:
    pairs = list(zip(predictions, references, strict=True))
    return sum(normalize_for_match(p) == normalize_for_match(r) for p, r in pairs) / max(1, len(pairs))


def perplexity(total_nll_nats: float, n_units: int) -> float:
    """exp(mean negative log-likelihood); the unit (token, character) is the caller's to name."""
    return math.exp(total_nll_nats / n_units) if n_units else float("nan")


def generation_metrics(predictions: list[str], references: list[str]) -> dict[str, float | str]:
    """Everything for a prediction/reference pairing: BLEU, ROUGE-1/2/L, exact match."""
    out: dict[str, float | str] = dict(bleu(predictions, references))
    out.update(rouge(predictions, references))
    out["exact_match"] = exact_match(predictions, references)
    return out
