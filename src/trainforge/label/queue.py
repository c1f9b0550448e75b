"""One active-learning round: rank a pool with the run's classifier, write the next batch as Label Studio tasks.

    RUN/label/                  (or --out)
      tasks.json                this round's tasks, most informative first, each with the model's pre-annotation
      label_config.xml          the labelling config whose names the predictions use (paste into the project)
      queued.jsonl              every record queued so far, with its round: the budget counts it, the pool skips it
      queue.json                the round's summary (strategy, sizes, score range)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from trainforge.data.io import read_jsonl, write_jsonl
from trainforge.errors import UserError
from trainforge.label import strategies
from trainforge.label.config import LabelConfig
from trainforge.label.studio import ChoiceSchema, labelling_config, prediction, task

LABELLED_FOR_KCENTER = 5000
"""At most this many train-split texts seed k-center (their embeddings are the first centres)."""


def queue_round(run_dir: Path, pool_file: Path, cfg: LabelConfig, out: Path, seed: int = 0,
                model_dir: Path | None = None) -> dict:
    from trainforge.label.model import SavedClassifier

    run_dir, pool_file, out = Path(run_dir), Path(pool_file), Path(out)
    if not pool_file.is_file():
        raise UserError(f"{pool_file}: pool file not found (a JSONL of records with a `text` field)")
    model_dir = Path(model_dir) if model_dir else run_dir / "model"
    out.mkdir(parents=True, exist_ok=True)
    ledger = out / "queued.jsonl"
    done = read_jsonl(ledger) if ledger.is_file() else []
    seen = {d["id"] for d in done}
    pool = []
    for n, r in enumerate(read_jsonl(pool_file), 1):
        if not isinstance(r.get("text"), str) or not r["text"].strip():
            raise UserError(f"{pool_file}:{n}: record has no `text`; the pool is data-stage JSONL ({{\"id\", \"text\", …}})")
        r.setdefault("id", f"{pool_file.name}:{n}")
        if r["id"] not in seen:
            pool.append(r)
    room = cfg.batch_size if cfg.budget is None else min(cfg.batch_size, cfg.budget - len(done))
    if room <= 0:
        raise UserError(f"label.budget: all {cfg.budget} labels are spent ({ledger} lists them); raise label.budget")
    clf = SavedClassifier(model_dir)
    texts = [r["text"] for r in pool]
    need_emb = cfg.strategy == "kcenter"
    probs, emb = clf.score(texts, embeddings=need_emb)
    labelled = None
    train_file = run_dir / "data" / "train.jsonl"
    if need_emb and train_file.is_file():
        known = [r["text"] for r in read_jsonl(train_file)[:LABELLED_FOR_KCENTER]]
        labelled = clf.score(known, embeddings=True)[1]
    picked = strategies.select(cfg.strategy, room, probs=probs, embeddings=emb, labelled_embeddings=labelled, seed=seed)
    score = (strategies.uncertainty(probs, cfg.strategy) if cfg.strategy in ("least_confidence", "margin", "entropy")
             else np.zeros(len(pool)))
    schema = ChoiceSchema(cfg.from_name, cfg.to_name, tuple(clf.labels), cfg.text_key)
    tasks = [task(pool[i], schema, prediction(dict(zip(clf.labels, probs[i].tolist())), schema, clf.version),
                  float(score[i]) if cfg.strategy != "random" and cfg.strategy != "kcenter" else None) for i in picked]
    (out / "tasks.json").write_text(json.dumps(tasks, ensure_ascii=False, indent=1), encoding="utf-8")
    (out / "label_config.xml").write_text(labelling_config(schema), encoding="utf-8")
    rnd = max((d["round"] for d in done), default=0) + 1
    write_jsonl(ledger, [{"id": pool[i]["id"], "round": rnd} for i in picked], append=True)
    summary = {"round": rnd, "strategy": cfg.strategy, "pool": len(pool), "queued": len(tasks),
               "queued_total": len(done) + len(tasks), "budget": cfg.budget, "model_version": clf.version,
               "labels": clf.labels, "from_name": schema.from_name, "to_name": schema.to_name}
    (out / "queue.json").write_text(json.dumps(summary, ensure_ascii=False, indent=1), encoding="utf-8")
    return summary
