"""Class balance for the training split (data.balance), applied after the split so val and test keep the
distribution the model will meet.

    undersample   each class cut to ≤ max_ratio × the smallest class (random, seeded; reason: undersampled)
    oversample    each class raised to ≥ the largest class ÷ max_ratio by repeating random members
    smote/adasyn  the same targets met with synthetic feature vectors (imbalanced-learn's SMOTE / ADASYN):
                  for records that carry a numeric vector (`feature_field`), or, for text, for frozen-encoder
                  embeddings in front of a classifier head (resample_features + a head fit on the result)

A synthetic record says what it is in its metadata: {"synthetic": {"method", "from"}} (oversample: the record
it repeats; smote/adasyn: null — an interpolation has no single parent).

Why SMOTE is not a `train.method`: it makes points in a feature space, and a fine-tuned encoder's feature space
moves while it trains; interpolated inputs exist only for a frozen encoder. So it is a data-stage step for
feature records and a head-only fit for embeddings (benchmarks/balance_augment.py does the latter); class
weights (train.class_weights) are the alternative that fits the fine-tuning loop.
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter, defaultdict

import numpy as np

from trainforge.data.config import BalanceConfig
from trainforge.data.io import Record
from trainforge.errors import UserError


def class_targets(counts: dict, max_ratio: float, method: str) -> dict:
    """label → the count it should have: undersampling cuts down to max_ratio × smallest, the others raise up
    to largest ÷ max_ratio (rounded up, so the ratio holds)."""
    smallest, largest = min(counts.values()), max(counts.values())
    if method == "undersample":
        cap = max(1, math.floor(max_ratio * smallest))
        return {k: min(n, cap) for k, n in counts.items()}
    floor = math.ceil(largest / max_ratio)
    return {k: max(n, floor) for k, n in counts.items()}


def undersample(records: list[Record], max_ratio: float, seed: int) -> tuple[list[Record], list[Record]]:
    """(kept in input order, dropped)."""
    by_label = defaultdict(list)
    for i, r in enumerate(records):
        by_label[r.label].append(i)
    target = class_targets({k: len(v) for k, v in by_label.items()}, max_ratio, "undersample")
    rng, keep = random.Random(seed), set()
    for label in sorted(by_label, key=str):
        keep.update(rng.sample(by_label[label], target[label]))
    return [r for i, r in enumerate(records) if i in keep], [r for i, r in enumerate(records) if i not in keep]


def oversample(records: list[Record], max_ratio: float, seed: int) -> list[Record]:
    """The copies to add (each a repeat of a random member of its class, tagged)."""
    by_label = defaultdict(list)
    for r in records:
        by_label[r.label].append(r)
    target = class_targets({k: len(v) for k, v in by_label.items()}, max_ratio, "oversample")
    rng, added = random.Random(seed), []
    for label in sorted(by_label, key=str):
        members = by_label[label]
        for k in range(target[label] - len(members)):
            src = rng.choice(members)
            added.append(Record(f"{src.id}#oversample-{k}", src.text, src.label, src.source, src.line,
                                {**src.meta, "synthetic": {"method": "oversample", "from": src.id}},
                                src.image, src.audio, src.messages, src.prompt, src.chosen, src.rejected, src.reference))
    return added


def resample_features(x, y, method: str = "smote", max_ratio: float = 1.0, k_neighbors: int = 5, seed: int = 0):
    """imbalanced-learn's SMOTE / ADASYN raising each class to largest ÷ max_ratio: (x_new, y_new), the
    synthetic rows only (imbalanced-learn returns the originals first, unchanged, then the new rows)."""
    try:
        from imblearn.over_sampling import ADASYN, SMOTE
    except ImportError:
        raise UserError("data.balance.method=smote/adasyn needs imbalanced-learn: pip install 'trainforge[data]'") from None
    y = np.asarray(y)
    counts = Counter(y.tolist())
    target = class_targets(counts, max_ratio, "smote")
    strategy = {k: v for k, v in target.items() if v > counts[k]}
    if not strategy:
        return x[:0], y[:0]
    smallest = min(counts[k] for k in strategy)
    if smallest <= k_neighbors:
        raise UserError(f"data.balance.k_neighbors={k_neighbors}: the smallest class to grow has only {smallest} records; "
                        f"lower k_neighbors below {smallest}")
    if method == "smote":
        sampler = SMOTE(sampling_strategy=strategy, k_neighbors=k_neighbors, random_state=seed)
    else:  # ADASYN decides its own per-class counts near the target (it weights hard regions), so they may differ a little
        sampler = ADASYN(sampling_strategy=strategy, n_neighbors=k_neighbors, random_state=seed)
    x_res, y_res = sampler.fit_resample(x, y)
    return x_res[len(y):], y_res[len(y):]


def smote_records(records: list[Record], cfg: BalanceConfig, seed: int) -> list[Record]:
    """Synthetic records for the minority classes from each record's `feature_field` vector."""
    rows = []
    for r in records:
        v = r.meta.get(cfg.feature_field)
        if not isinstance(v, list) or not v or not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in v):
            raise UserError(f"data.balance.method={cfg.method}: record {r.id} ({r.source}:{r.line}) has no numeric vector in "
                            f"`{cfg.feature_field}`; SMOTE interpolates feature vectors (set data.balance.feature_field), "
                            f"for text use undersample/oversample or train.class_weights")
        rows.append(v)
    if len({len(v) for v in rows}) > 1:
        raise UserError(f"data.balance: `{cfg.feature_field}` vectors differ in length ({sorted({len(v) for v in rows})})")
    x = np.asarray(rows, dtype=np.float64)
    y = np.asarray([r.label for r in records], dtype=object)
    x_new, y_new = resample_features(x, y, cfg.method, cfg.max_ratio, cfg.k_neighbors, seed)
    source = records[0].source if records else ""
    return [Record(f"{cfg.method}-{k}", None, str(label), f"{cfg.method}:{source}", 0,
                   {cfg.feature_field: vec.tolist(), "synthetic": {"method": cfg.method, "from": None}})
            for k, (vec, label) in enumerate(zip(x_new, y_new))]


def balance_split(train: list[Record], cfg: BalanceConfig, funnel, seed: int) -> tuple[list[Record], int]:
    """The balanced training split and how many records it gained (0 for undersampling, whose drops are counted)."""
    t0 = time.perf_counter()
    labelled = [r for r in train if r.label is not None]
    unlabelled = [r for r in train if r.label is None]
    counts = Counter(r.label for r in labelled)
    before = dict(counts)
    if len(counts) < 2:
        funnel.step("balance", [r.document for r in train], [r.document for r in train], time.perf_counter() - t0, Counter(),
                    method=cfg.method, skipped="fewer than two labels in the training split", before=before)
        return train, 0
    dropped, added = [], []
    if cfg.method == "undersample":
        kept, dropped = undersample(labelled, cfg.max_ratio, seed)
        for r in dropped:
            funnel.drop(r, "undersampled", "balance")
        out = kept + unlabelled
    elif cfg.method == "oversample":
        added = oversample(labelled, cfg.max_ratio, seed)
        out = train + added
    else:
        added = smote_records(labelled, cfg, seed)
        out = train + added
    after = dict(Counter(r.label for r in out if r.label is not None))
    # docs_out counts the originals that pass on; the added ones are reported beside them (`added`)
    passed = train if added else out
    funnel.step("balance", [r.document for r in train], [r.document for r in passed], time.perf_counter() - t0,
                Counter({"undersampled": len(dropped)}) if dropped else Counter(),
                method=cfg.method, max_ratio=cfg.max_ratio, before=before, after=after, added=len(added))
    return out, len(added)
