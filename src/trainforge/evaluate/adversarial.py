"""A TextFooler-style attack (Jin et al., 2020), Chinese-aware.

For each correctly classified example:
  1. split into words (jieba; Latin words stay whole);
  2. importance of word i = drop in P(true label) when word i is deleted (one batched forward);
  3. for words in order of importance: try up to k substitutes from the allowed sources only
     (substitutes.py: homophones, look-alike characters, thesaurus synonyms — the meaning-preserving
     ones; embedding neighbours only in the separate "unconstrained" run); keep only rewrites whose chrF to the original
     is >= min_sentence_similarity (the similarity constraint; TextFooler uses a sentence encoder);
     a rewrite that flips the prediction ends the attack (the most similar flipping one wins),
     otherwise keep the one that lowers P(true label) most and go on;
  4. give up once max_perturbed_fraction of the words are replaced.
Reported: attack success rate (flipped / attacked), accuracy under attack (over every sampled
example), mean perturbed fraction of the successful attacks, queries, and examples: successful
rewrites, and substitutions accepted and rejected (with the constraint that rejected them).
"""

from __future__ import annotations

import random
import unicodedata
from dataclasses import dataclass, field

import numpy as np

from trainforge.console import progress_bar
from trainforge.evaluate.config import AdversarialConfig
from trainforge.evaluate.substitutes import MEANING_PRESERVING, SubstitutionSource, segment


class Classifier:
    """texts → (N, K) probabilities, batched, counting every text it scores (the attack's queries).
    The forward runs on the model's device (predict_logits); the probabilities come back as NumPy."""

    def __init__(self, model, tokenizer, batch_size: int = 64):
        self.model, self.tokenizer, self.batch_size = model, tokenizer, batch_size
        self.max_length = min(int(tokenizer.model_max_length or 512), 4096)
        self.queries = 0

    def probs(self, texts: list[str]) -> np.ndarray:
        import torch

        from trainforge.batching import Encoded, predict_logits

        self.queries += len(texts)
        ids = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)["input_ids"]
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        logits = predict_logits(self.model, Encoded(ids, [0] * len(ids)), self.batch_size, pad)
        return torch.softmax(logits, -1).numpy()

    def visible_chars(self, text: str) -> int:
        """How many leading characters survive truncation (words after that cannot matter)."""
        enc = self.tokenizer(text, truncation=True, max_length=self.max_length, return_offsets_mapping=True)
        ends = [e for _, e in enc["offset_mapping"] if e]
        return max(ends) if ends else len(text)


@dataclass
class AttackResult:
    text: str
    label: int
    perturbed: str
    success: bool
    pred_after: int
    prob_before: float
    prob_after: float
    words: int
    changed: list[dict] = field(default_factory=list)
    """Substitutions applied: {from, to, kind}."""
    rejected: list[dict] = field(default_factory=list)
    """Substitutions tried and refused: {from, to, kind, reason} (the first few per example)."""

    @property
    def perturbed_fraction(self) -> float:
        return len(self.changed) / max(1, self.words)


def _is_word(w: str) -> bool:
    return bool(w.strip()) and not all(unicodedata.category(c)[0] in "PZS" for c in w)


REJECTED_KEPT = 4  # refused substitutions kept per example, to show in the report


def attack_one(text: str, label: int, clf: Classifier, source: SubstitutionSource, cfg: AdversarialConfig,
               kinds: tuple[str, ...] | list[str] = MEANING_PRESERVING) -> AttackResult:
    import sacrebleu

    words = segment(text)
    limit = clf.visible_chars(text)
    starts = np.cumsum([0] + [len(w) for w in words[:-1]])
    attackable = [i for i, w in enumerate(words) if _is_word(w) and starts[i] < limit]
    p0 = clf.probs([text])[0]
    result = AttackResult(text, label, text, False, int(p0.argmax()), float(p0[label]), float(p0[label]), len(attackable))
    if not attackable:
        return result
    deleted = clf.probs(["".join(words[:i] + words[i + 1 :]) for i in attackable])
    importance = p0[label] - deleted[:, label]
    order = [attackable[j] for j in np.argsort(-importance, kind="stable")]
    budget = max(1, int(cfg.max_perturbed_fraction * len(attackable)))
    current, p_current = list(words), float(p0[label])
    for i in order:
        if len(result.changed) >= budget:
            break
        cands = [c for c in source.candidates(words[i], cfg.candidates_per_word, kinds) if c.kind in kinds]
        texts = ["".join(current[:i] + [c.text] + current[i + 1 :]) for c in cands]
        sims = [sacrebleu.sentence_chrf(t, [text]).score / 100 for t in texts]
        keep = [j for j, s in enumerate(sims) if s >= cfg.min_sentence_similarity]
        for j, sim in enumerate(sims):
            if sim < cfg.min_sentence_similarity and len(result.rejected) < REJECTED_KEPT:
                result.rejected.append({"from": words[i], "to": cands[j].text, "kind": cands[j].kind,
                                        "reason": f"chrF {sim:.2f} < min_sentence_similarity {cfg.min_sentence_similarity}"})
        if not keep:
            continue
        probs = clf.probs([texts[j] for j in keep])
        flipped = [n for n, j in enumerate(keep) if probs[n].argmax() != label]
        best = max(flipped, key=lambda n: sims[keep[n]]) if flipped else int(probs[:, label].argmin())
        if not flipped and probs[best, label] >= p_current:
            if len(result.rejected) < REJECTED_KEPT:
                result.rejected.append({"from": words[i], "to": cands[keep[best]].text, "kind": cands[keep[best]].kind,
                                        "reason": "no candidate lowers P(true label)"})
            continue
        j = keep[best]
        current[i] = cands[j].text
        p_current = float(probs[best, label])
        result.changed.append({"from": words[i], "to": cands[j].text, "kind": cands[j].kind})
        result.perturbed, result.prob_after, result.pred_after = texts[j], p_current, int(probs[best].argmax())
        if flipped:
            result.success = True
            break
    return result


def run_attack(rows: list[dict], y_true: np.ndarray, y_pred: np.ndarray, labels: list[str], clf: Classifier,
               source: SubstitutionSource, cfg: AdversarialConfig, seed: int,
               kinds: tuple[str, ...] | list[str] = MEANING_PRESERVING, name: str = "attack") -> dict:
    """Attack a seeded sample with substitutes from `kinds` only; the summary and examples for adversarial.json."""
    kinds = [k for k in source.kinds if k in kinds]  # those this machine has, in a fixed order
    sample = sorted(random.Random(seed).sample(range(len(rows)), min(cfg.samples, len(rows))))
    attacked = [i for i in sample if y_pred[i] == y_true[i]]
    queries_before = clf.queries
    results: list[AttackResult] = []
    with progress_bar(name, total=len(attacked), unit="examples") as bar:
        for i in attacked:
            results.append(attack_one(rows[i]["text"], int(y_true[i]), clf, source, cfg, kinds))
            bar.advance()
    wins = [r for r in results if r.success]
    by_kind: dict[str, int] = {}
    for r in wins:
        for c in r.changed:
            by_kind[c["kind"]] = by_kind.get(c["kind"], 0) + 1
    return {
        "sampled": len(sample),
        "accuracy_clean": round(len(attacked) / max(1, len(sample)), 5),
        "attacked": len(attacked),
        "succeeded": len(wins),
        "attack_success_rate": round(len(wins) / max(1, len(attacked)), 5),
        "accuracy_under_attack": round((len(attacked) - len(wins)) / max(1, len(sample)), 5),
        "mean_perturbed_fraction": round(float(np.mean([r.perturbed_fraction for r in wins])), 5) if wins else None,
        "mean_queries": round((clf.queries - queries_before) / max(1, len(attacked)), 1),
        "substitutions_in_successes_by_kind": by_kind,
        "candidate_sources": kinds,
        "meaning_preserving": all(k in MEANING_PRESERVING for k in kinds),
        "constraints": {"max_perturbed_fraction": cfg.max_perturbed_fraction, "min_sentence_chrf": cfg.min_sentence_similarity,
                        "min_word_cosine": cfg.min_word_similarity},
        "examples": [
            {"id": rows[i]["id"], "label": labels[r.label], "pred_after": labels[r.pred_after],
             "prob_of_label_before": round(r.prob_before, 4), "prob_of_label_after": round(r.prob_after, 4),
             "original": r.text[:300], "perturbed": r.perturbed[:300], "substitutions": r.changed,
             "perturbed_fraction": round(r.perturbed_fraction, 4)}
            for i, r in zip(attacked, results) if r.success
        ][:20],
        "accepted": [{"id": rows[i]["id"], **c} for i, r in zip(attacked, results) for c in r.changed][:20],
        "rejected": [{"id": rows[i]["id"], **c} for i, r in zip(attacked, results) for c in r.rejected][:20],
    }
