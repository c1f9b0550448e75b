"""Label-error detection after the split: out-of-fold probabilities → cleanlab's find_label_issues.

    train (+ val if listed) ──▶ K-fold cross_val_predict(TF-IDF char 1–3-grams + LR)   (N, classes) probabilities,
         │                      or a trained model's out-of-fold probabilities (pred_probs)   each from a model
         │                                                                                   that never saw the record
         ▼
    cleanlab.filter.find_label_issues (confident learning: per-class thresholds, the confident joint of given × true)
         ▼
    data/label_issues.jsonl   id, split, text, given label, suspected label, self-confidence (P(given label)), action
    flag: kept and listed;  drop: removed, reason `label_issue` in the funnel and data/rejected/label_issue.jsonl

Why after the split and never on test: the test split is the unbiased estimate of the final model; removing
the examples a model disagrees with from it would flatter that model. The detector also never sees the test
records (no test text enters a fold), so nothing about test leaks into training through it. Val is opt-in:
cleaning it changes checkpoint selection, not the final estimate. Char n-grams, because Chinese has no spaces
(the same features as the TF-IDF + LR baseline of evaluate/baseline.py).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import numpy as np

from trainforge.data.config import LabelIssuesConfig
from trainforge.data.io import Record
from trainforge.errors import UserError
from trainforge.paths import LABEL_ISSUES


def out_of_fold_probs(texts: list[str], y: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """(N, classes) probabilities, each row from the model of the fold that held the record out."""
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    from trainforge.evaluate.baseline import tfidf_lr_pipeline

    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    (_, vectorizer), (_, classifier) = tfidf_lr_pipeline(seed).steps
    # The vectorizer is fitted once on every judged text: it sees no label, so a held-out record's label still
    # never reaches the model that scores it, and the char n-gram counting (most of the time) is done once, not K times.
    features = vectorizer.fit_transform(texts)
    return cross_val_predict(classifier, features, y, cv=cv, method="predict_proba", n_jobs=1)


def _probs_from_file(path: str, records: list[Record], classes: list[str]) -> np.ndarray:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"data.label_issues.pred_probs: {p}: no such file")
    by_id: dict[str, dict] = {}
    with open(p, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            try:
                row = json.loads(line)
                by_id[str(row["id"])] = row["probs"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise UserError(f"{p}:{n}: expected {{\"id\": …, \"probs\": {{label: p}}}}") from None
    missing = [r.id for r in records if r.id not in by_id]
    if missing:
        raise UserError(f"data.label_issues.pred_probs: {p} has no probabilities for {len(missing)} records (e.g. {missing[0]})")
    out = np.array([[float(by_id[r.id].get(c, 0.0)) for c in classes] for r in records])
    return out / np.clip(out.sum(axis=1, keepdims=True), 1e-12, None)


def find_issues(texts: list[str], labels: list[str], cfg: LabelIssuesConfig, seed: int,
                pred_probs: np.ndarray | None = None) -> tuple[list[dict], dict]:
    """([{index, given_label, suspected_label, self_confidence, suspected_probability}] ranked most suspect first, info)."""
    classes = sorted(set(labels))
    counts = Counter(labels)
    info: dict = {"judged": len(texts), "classes": len(classes), "filter_by": cfg.filter_by}
    if len(classes) < 2:
        return [], {**info, "skipped": "fewer than two labels"}
    y = np.array([classes.index(lab) for lab in labels])
    if pred_probs is None:
        folds = min(cfg.folds, min(counts.values()))
        if folds < 2:
            return [], {**info, "skipped": f"label '{min(counts, key=counts.get)}' has one example: no cross-validation"}
        pred_probs = out_of_fold_probs(texts, y, folds, seed)
        info |= {"model": "tfidf-lr", "folds": folds}
    else:
        info |= {"model": "pred_probs file"}
    from cleanlab.filter import find_label_issues

    ranked = find_label_issues(labels=y, pred_probs=pred_probs, filter_by=cfg.filter_by,
                               return_indices_ranked_by="self_confidence", n_jobs=1)
    issues = []
    for i in ranked:
        order = np.argsort(-pred_probs[i])
        suspected = int(order[0]) if order[0] != y[i] else int(order[1])  # the likeliest label other than the given one
        issues.append({"index": int(i), "given_label": classes[y[i]], "suspected_label": classes[suspected],
                       "self_confidence": round(float(pred_probs[i, y[i]]), 4),
                       "suspected_probability": round(float(pred_probs[i, suspected]), 4)})
    info["accuracy_out_of_fold"] = round(float((pred_probs.argmax(axis=1) == y).mean()), 4)
    return issues, info


def handle_label_issues(split: dict[str, list[Record]], cfg: LabelIssuesConfig, funnel, out: Path, seed: int) -> dict[str, list[Record]]:
    """Search the configured splits, write data/label_issues.jsonl, drop (action: drop) or keep; test passes untouched."""
    t0 = time.perf_counter()
    judged = [(name, r) for name in cfg.splits for r in split[name]
              if r.label is not None and r.document and len(r.document) >= cfg.min_chars]
    records = [r for _, r in judged]
    labels = [r.label for r in records]
    probs = _probs_from_file(cfg.pred_probs, records, sorted(set(labels))) if cfg.pred_probs and records else None
    issues, info = find_issues([r.document for r in records], labels, cfg, seed, probs) if records else ([], {"judged": 0})
    flagged = {}
    with open(out / Path(LABEL_ISSUES).name, "w", encoding="utf-8") as f:  # out: the run's data/
        for issue in issues:
            name, r = judged[issue.pop("index")]
            flagged[id(r)] = name
            f.write(json.dumps({"id": r.id, "split": name, "text": r.document[:2000], **issue, "action": cfg.action},
                               ensure_ascii=False) + "\n")
    before = [r.document for part in split.values() for r in part]
    result = {}
    for name, part in split.items():
        if cfg.action == "drop" and name in cfg.splits:
            kept = []
            for r in part:
                if id(r) in flagged:
                    funnel.drop(r, "label_issue", "label_issues")
                else:
                    kept.append(r)
            result[name] = kept
        else:
            result[name] = part
    after = [r.document for part in result.values() for r in part]
    dropped = Counter({"label_issue": len(before) - len(after)}) if len(after) < len(before) else Counter()
    funnel.step("label_issues", before, after, time.perf_counter() - t0, dropped, action=cfg.action, flagged=len(flagged),
                flagged_by_split=dict(Counter(flagged.values())), splits=list(cfg.splits), **info)
    return result


def report_fragment(run_dir: Path, stats: dict) -> str:
    """The flagged records (the 20 least self-confident) under the data funnel; '' when the step did not run."""
    from trainforge.report.html import esc, table

    step = stats.get("steps", {}).get("label_issues")
    path = run_dir / LABEL_ISSUES
    if not step or not path.is_file():
        return ""
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if len(rows) == 20:
                break
            r = json.loads(line)
            rows.append([r["split"], f"<code>{esc(r['text'][:80])}</code>", r["given_label"], r["suspected_label"],
                         f"{r['self_confidence']:.3f}"])
    verb = "dropped (reason label_issue)" if step["action"] == "drop" else "flagged and kept"
    skipped = f" — skipped: {esc(step['skipped'])}" if step.get("skipped") else ""
    head = (f"<h3>Label issues</h3><p>{step['flagged']:,} of {step.get('judged', 0):,} records in "
            f"{esc(', '.join(step['splits']))} {verb}{skipped}; cleanlab find_label_issues ({esc(step.get('filter_by', ''))}) on "
            f"out-of-fold probabilities of {esc(step.get('model', '-'))} (out-of-fold accuracy "
            f"{step.get('accuracy_out_of_fold', float('nan')):.3f}); test is never searched. All in data/label_issues.jsonl; "
            f"the least self-confident first:</p>")
    return head + (table(["split", "text", "given", "suspected", "P(given)"], rows) if rows else "")
