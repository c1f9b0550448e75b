"""The language-modelling baseline: a character n-gram LM with interpolated Kneser–Ney smoothing.

Characters, not tokens, so its perplexity compares with any model's once that model's total
log-likelihood of a text is divided by the text's characters (see lm.py):

    P(c | h) = max(N(h c) − D, 0) / N(h·)  +  D · T(h) / N(h·) · P(c | h')        h' = h minus its first char
    lowest order: continuation counts, P(c) ∝ #distinct left contexts of c, mixed with uniform over
    the vocabulary + 1 (unseen characters keep a small, non-zero probability)

N = counts at the highest order, continuation counts (distinct left neighbours) at lower orders;
T(h) = distinct characters seen after h; D = 0.75. Texts are padded with order−1 start symbols
and end with an end symbol, which is scored (as a model scores its end-of-sequence token).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict

BOS, EOS = "\x02", "\x03"


class CharNgramLM:
    def __init__(self, order: int = 3, discount: float = 0.75):
        if order < 1:
            raise ValueError("order must be >= 1")
        self.order, self.d = order, discount

    def fit(self, texts: list[str]) -> "CharNgramLM":
        n = self.order
        top: Counter = Counter()
        for t in texts:
            s = BOS * (n - 1) + t + EOS
            top.update(s[i : i + n] for i in range(len(s) - n + 1))
        # counts per order: highest = raw counts; lower = continuation counts (distinct left extensions)
        self.counts: list[Counter] = [Counter() for _ in range(n + 1)]
        self.counts[n] = top
        for k in range(n, 1, -1):
            for gram in self.counts[k]:
                self.counts[k - 1][gram[1:]] += 1
        # per context at each order: total count and distinct followers
        self.ctx_total: list[dict] = [defaultdict(int) for _ in range(n + 1)]
        self.ctx_types: list[dict] = [defaultdict(int) for _ in range(n + 1)]
        for k in range(1, n + 1):
            for gram, c in self.counts[k].items():
                self.ctx_total[k][gram[:-1]] += c
                self.ctx_types[k][gram[:-1]] += 1
        self.vocab = {g for g in self.counts[1]} | {EOS}
        return self

    def prob(self, history: str, c: str) -> float:
        p = 1.0 / (len(self.vocab) + 1)  # uniform floor, +1 for any unseen character
        for k in range(1, self.order + 1):
            h = history[len(history) - (k - 1) :] if k > 1 else ""
            total = self.ctx_total[k].get(h, 0)
            if total == 0:
                continue  # unseen context: keep the lower-order estimate
            c_hw = self.counts[k].get(h + c, 0)
            p = max(c_hw - self.d, 0) / total + self.d * self.ctx_types[k][h] / total * p
        return p

    def nll(self, text: str) -> tuple[float, int]:
        """(total negative log-likelihood in nats, characters scored incl. the end symbol)."""
        s = BOS * (self.order - 1) + text + EOS
        total = 0.0
        for i in range(self.order - 1, len(s)):
            total -= math.log(self.prob(s[i - self.order + 1 : i], s[i]))
        return total, len(s) - self.order + 1
