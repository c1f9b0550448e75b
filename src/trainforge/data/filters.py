"""Quality filters: each a small class with named thresholds (its config section, defaults included)
and one method. Two kinds of step, told apart by whether the class has `fit`:

    per-document   reason(text) -> None (keep) | "snake_case_reason" (drop)
                   datatrove's filter(doc) -> bool | (False, reason); judged in the workers, shard by shard
    corpus-level   score(texts) -> one float a document        (in the workers, with the per-document steps)
                   fit(scores)                                 (once, in the parent, over the scores of
                                                                what the earlier steps kept)
                   reason(score) -> None | "snake_case_reason" (each document against the fitted threshold)
                   summary() -> {"threshold_…": value}         (what the funnel records for the step)

A corpus-level step comes last: its threshold is fitted over what the per-document steps kept. The
pipeline owns counting, timing, examples and the rejected/ writer (as datatrove's base filter does).

Records without text (an image with a label) are not judged by any text filter: they pass, and the
funnel counts them under the step's `no_text` (see pipeline.clean).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Protocol

from trainforge.data import config as C
from trainforge.data.quality import QualityStep
from trainforge.errors import UserError
from trainforge.text_scripts import CJK, NON_CJK_WORD, SCRIPTS, is_cjk_text

TERMINAL = set(".!?。！？…") | {"\u2026"}
CLOSERS = "\"'”’」』)）】》"


class DocumentFilter(Protocol):
    name: str

    def reason(self, text: str) -> str | None: ...


class CorpusFilter(Protocol):
    name: str

    def score(self, texts: list[str]) -> list[float]: ...

    def fit(self, scores: list[float]) -> None: ...

    def reason(self, score: float) -> str | None: ...

    def summary(self) -> dict: ...


def count_tokens(text: str) -> int:
    """A CJK character or a non-CJK word is one token (what a Chinese tokenizer roughly sees)."""
    return len(CJK.findall(text)) + len(NON_CJK_WORD.findall(text))


class LengthFilterStep:
    name = "length"

    def __init__(self, cfg: C.LengthFilter | None = None):
        self.cfg = cfg if cfg is not None else C.LengthFilter()

    def reason(self, text: str) -> str | None:
        c = self.cfg
        if len(text) < c.min_chars:
            return "too_short"
        if len(text) > c.max_chars:
            return "too_long"
        if c.min_tokens or c.max_tokens is not None:
            n = count_tokens(text)
            if n < c.min_tokens:
                return "too_few_tokens"
            if c.max_tokens is not None and n > c.max_tokens:
                return "too_many_tokens"
        return None


class ScriptRatioStep:
    name = "script_ratio"

    def __init__(self, cfg: C.ScriptRatioFilter | None = None):
        self.cfg = cfg = cfg if cfg is not None else C.ScriptRatioFilter()
        self.pattern = re.compile(f"[{SCRIPTS[cfg.script]}]")

    def reason(self, text: str) -> str | None:
        letters = sum(1 for ch in text if ch.isalpha())
        share = len(self.pattern.findall(text)) / letters if letters else 0.0
        return "low_script_ratio" if share < self.cfg.min_ratio else None


class SymbolRatioStep:
    name = "symbol_ratio"

    def __init__(self, cfg: C.SymbolRatioFilter | None = None):
        self.cfg = cfg if cfg is not None else C.SymbolRatioFilter()

    def reason(self, text: str) -> str | None:
        chars = [ch for ch in text if not ch.isspace()]
        if len(chars) < self.cfg.min_chars_to_apply:
            return None
        import unicodedata

        symbols = sum(1 for ch in chars if unicodedata.category(ch)[0] in "PS")
        digits = sum(1 for ch in chars if ch.isdigit())
        if symbols / len(chars) > self.cfg.max_symbol_ratio:
            return "too_many_symbols"
        if digits / len(chars) > self.cfg.max_digit_ratio:
            return "too_many_digits"
        return None


def _dup_fraction(parts: list[str]) -> float:
    parts = [p for p in parts if p.strip()]
    if len(parts) < 2:
        return 0.0
    seen: set[str] = set()
    dups = 0
    for p in parts:
        dups += p in seen
        seen.add(p)
    return dups / len(parts)


class RepetitionStep:
    """Gopher repetition; units are characters for CJK text (no spaces to split on), words otherwise."""

    name = "repetition"

    def __init__(self, cfg: C.RepetitionFilter | None = None):
        self.cfg = cfg if cfg is not None else C.RepetitionFilter()

    def reason(self, text: str) -> str | None:
        c = self.cfg
        if len(text) < c.min_chars_to_apply:
            return None
        if _dup_fraction(text.split("\n")) > c.max_dup_line_frac:
            return "duplicate_lines"
        if _dup_fraction(re.split(r"\n\s*\n", text)) > c.max_dup_para_frac:
            return "duplicate_paragraphs"
        cjk = is_cjk_text(text)
        # CJK: the text without whitespace, as a str (slicing a str is ~3x cheaper than building tuples)
        units = "".join(text.split()) if cjk else text.split()
        top = c.cjk_top_ngram_frac if cjk else c.max_top_ngram_frac
        dup = c.cjk_dup_ngram_frac if cjk else c.max_dup_ngram_frac
        total = len(units)
        if total == 0:
            return None
        for n, limit in sorted(top.items()):
            if total < n:
                break
            grams = Counter(_grams(units, n))
            count = grams.most_common(1)[0][1]
            if count > 1 and count * n / total > limit:  # a gram seen once is not repetition
                return "top_ngram_repetition"
        # coverage by repeated n-grams only shrinks as n grows: when the smallest n is under the
        # smallest limit, every n passes (the common case, one pass instead of six)
        ns = sorted(dup)
        if ns and total >= ns[0] and _dup_coverage(units, ns[0]) <= min(dup.values()):
            return None
        for n in ns:
            if total >= n and _dup_coverage(units, n) > dup[n]:
                return "duplicate_ngram_repetition"
        return None


def _grams(units: str | list, n: int) -> list:
    if isinstance(units, str):
        return [units[i : i + n] for i in range(len(units) - n + 1)]
    return [tuple(units[i : i + n]) for i in range(len(units) - n + 1)]


def _dup_coverage(units: str | list, n: int) -> float:
    """Share of units inside an n-gram that occurs more than once."""
    grams = _grams(units, n)
    counts = Counter(grams)
    if len(counts) == len(grams):
        return 0.0
    covered = bytearray(len(units))
    for i, g in enumerate(grams):
        if counts[g] > 1:
            covered[i : i + n] = b"\x01" * n
    return sum(covered) / len(units)


class TerminalPunctuationStep:
    name = "terminal_punctuation"

    def __init__(self, cfg: C.TerminalPunctuationFilter | None = None):
        self.cfg = cfg if cfg is not None else C.TerminalPunctuationFilter()

    def reason(self, text: str) -> str | None:
        lines = [ln.rstrip().rstrip(CLOSERS) for ln in text.split("\n") if ln.strip()]
        if not lines:
            return "no_terminal_punctuation"
        ended = sum(1 for ln in lines if ln and ln[-1] in TERMINAL)
        return "no_terminal_punctuation" if ended / len(lines) < self.cfg.min_line_share else None


def builtin_bad_words(language: str) -> list[str]:
    path = Path(__file__).parent / "badwords" / f"{language}.txt"
    return [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip() and not ln.startswith("#")]


class BadWordsStep:
    name = "bad_words"

    def __init__(self, cfg: C.BadWordsFilter | None = None):
        cfg = cfg if cfg is not None else C.BadWordsFilter()
        words = cfg.words if cfg.words is not None else builtin_bad_words(cfg.language)
        # CJK words match as substrings; others as whole words (so "class" does not hit "ass")
        alts = [re.escape(w) if CJK.search(w) else rf"\b{re.escape(w)}\b" for w in words if w]
        self.pattern = re.compile("|".join(alts), re.IGNORECASE) if alts else None

    def reason(self, text: str) -> str | None:
        return "bad_words" if self.pattern is not None and self.pattern.search(text) else None


class LanguageStep:
    """langid.py (Lui & Baldwin 2012): its model ships inside the langid package, nothing downloads."""

    name = "language"
    _identifier = None  # one per process: loading the model takes ~1.5 s

    def __init__(self, cfg: C.LanguageFilter | None = None):
        self.cfg = cfg = cfg if cfg is not None else C.LanguageFilter()
        self.keep = set(cfg.languages)

    @classmethod
    def identifier(cls):
        if cls._identifier is None:
            try:
                from langid.langid import LanguageIdentifier, model
            except ImportError:
                raise UserError("the language filter needs langid: pip install 'trainforge[data]'") from None
            cls._identifier = LanguageIdentifier.from_modelstring(model, norm_probs=True)
        return cls._identifier

    def reason(self, text: str) -> str | None:
        if len(text) < self.cfg.min_chars_to_apply:
            return None
        lang, prob = self.classify(text)
        return None if lang in self.keep and prob >= self.cfg.min_probability else "wrong_language"

    def classify(self, text: str) -> tuple[str, float]:
        """langid's classify, with the dot product over the non-zero features only (~25× faster:
        a document touches a few hundred of the model's 7,480 byte n-gram features)."""
        import numpy as np

        ident = self.identifier()
        fv = ident.instance2fv(text)
        nz = np.flatnonzero(fv)
        probs = ident.norm_probs(fv[nz].astype(np.float64) @ ident.nb_ptc[nz] + ident.nb_pc)
        best = int(np.argmax(probs))
        return str(ident.nb_classes[best]), float(probs[best])


STEPS = {
    "length": LengthFilterStep,
    "script_ratio": ScriptRatioStep,
    "symbol_ratio": SymbolRatioStep,
    "repetition": RepetitionStep,
    "terminal_punctuation": TerminalPunctuationStep,
    "bad_words": BadWordsStep,
    "language": LanguageStep,
    "quality": QualityStep,
}
"""FilterSpec key → step class (constructed with its config section)."""


def build_filters(specs: list[C.FilterSpec]) -> list[DocumentFilter | CorpusFilter]:
    """The steps, in config order, both kinds."""
    return [STEPS[s.name](getattr(s, s.name)) for s in specs]


def corpus_level(step) -> bool:
    """Is this step (or step class, or FilterSpec) fitted on the corpus before it judges?"""
    if isinstance(step, C.FilterSpec):
        step = STEPS[step.name]
    return hasattr(step, "fit")


def check_order(specs: list[C.FilterSpec]) -> None:
    """A corpus-level filter must be the last: its threshold is over what every other filter kept, and
    the per-document filters run in the workers before the parent fits it."""
    for i, s in enumerate(specs):
        if corpus_level(s) and i != len(specs) - 1:
            raise UserError(f"data.filters: the {s.name} filter must be the last one (it is corpus-level: its threshold "
                            "is fitted over what the others kept)")


# Per-language defaults a user can start from (`trainforge data clean --lang zh`).
PER_LANGUAGE_DEFAULTS: dict[str, list[dict]] = {
    "zh": [
        {"length": {"min_chars": 2, "max_chars": 100_000}},
        {"script_ratio": {"script": "han", "min_ratio": 0.3}},
        {"symbol_ratio": {}},
        {"repetition": {}},
        {"bad_words": {"language": "zh"}},
        {"language": {"languages": ["zh"]}},
    ],
    "en": [
        {"length": {"min_chars": 20, "max_chars": 100_000, "min_tokens": 5}},
        {"script_ratio": {"script": "latin", "min_ratio": 0.7}},
        {"symbol_ratio": {"max_symbol_ratio": 0.3, "max_digit_ratio": 0.3}},
        {"repetition": {"min_chars_to_apply": 200}},
        {"terminal_punctuation": {}},
        {"bad_words": {"language": "en"}},
        {"language": {"languages": ["en"], "min_chars_to_apply": 20}},
    ],
}
