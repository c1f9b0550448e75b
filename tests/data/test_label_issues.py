"""Label-error detection: planted flips are found; flagged/dropped records are accounted for; test is never touched."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import yaml

from tests.conftest import make_reviews
from trainforge.data.config import LabelIssuesConfig
from trainforge.data.label_issues import find_issues

pytest.importorskip("cleanlab", reason="label-issue detection needs cleanlab: pip install 'trainforge[data]'")


def _flip(label: str) -> str:
    return "negative" if label == "positive" else "positive"


def test_planted_flips_are_found_with_high_precision_and_recall():
    rows = make_reviews(400, seed=3)
    planted = set(random.Random(0).sample(range(len(rows)), 20))  # 5%
    labels = [_flip(r["label"]) if i in planted else r["label"] for i, r in enumerate(rows)]
    issues, info = find_issues([r["text"] for r in rows], labels, LabelIssuesConfig(), seed=0)
    found = {x["index"] for x in issues}
    hits = len(found & planted)
    assert hits / len(found) >= 0.9 and hits / len(planted) >= 0.9  # measured 0.95 / 0.95 on this construction
    assert info["model"] == "tfidf-lr" and info["folds"] == 5
    for x in issues:  # the suspected label of a planted flip is the original one
        assert x["suspected_label"] != x["given_label"] and 0 <= x["self_confidence"] < 0.5 < x["suspected_probability"]
    assert [x["self_confidence"] for x in issues] == sorted(x["self_confidence"] for x in issues)  # most suspect first


def test_a_trained_models_probabilities_can_be_given_instead(tmp_path):
    from trainforge.data.io import Record
    from trainforge.data.label_issues import _probs_from_file

    records = [Record(f"r{i}", f"text {i}", "a" if i % 2 else "b", "s", i) for i in range(40)]
    with open(tmp_path / "probs.jsonl", "w") as f:
        for i, r in enumerate(records):  # the model agrees with every label but r3's and r8's
            p = 0.95 if i not in (3, 8) else 0.05
            f.write(json.dumps({"id": r.id, "probs": {r.label: p, ("b" if r.label == "a" else "a"): 1 - p}}) + "\n")
    probs = _probs_from_file(str(tmp_path / "probs.jsonl"), records, ["a", "b"])
    issues, info = find_issues([r.text for r in records], [r.label for r in records], LabelIssuesConfig(), 0, probs)
    assert sorted(x["index"] for x in issues) == [3, 8] and info["model"] == "pred_probs file"


def _run(tmp_path: Path, name: str, label_issues: dict | None) -> Path:
    from trainforge.config import load_config
    from trainforge.run import run_pipeline

    rows = make_reviews(300, seed=1)
    planted = set(random.Random(2).sample(range(len(rows)), 15))
    data = tmp_path / "in.jsonl"
    data.write_text("".join(json.dumps({**r, "label": _flip(r["label"]) if i in planted else r["label"]}, ensure_ascii=False) + "\n"
                            for i, r in enumerate(rows)), encoding="utf-8")
    cfg = {"name": name, "runs_dir": str(tmp_path / "runs"), "tracking": {"enabled": False},
           "data": {"sources": [{"path": str(data)}], "dedup": {"near": None}, "split": {"val": 0.15, "test": 0.15}}}
    if label_issues is not None:
        cfg["data"]["label_issues"] = label_issues
    (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    run_pipeline(load_config(tmp_path / f"{name}.yaml"))
    return tmp_path / "runs" / name


def test_drop_removes_flagged_training_records_and_never_touches_test(tmp_path):
    plain = _run(tmp_path, "plain", None)
    dropped = _run(tmp_path, "dropped", {"action": "drop", "splits": ["train", "val"]})
    flagged = _run(tmp_path, "flagged", {"action": "flag"})
    assert (plain / "data" / "test.jsonl").read_bytes() == (dropped / "data" / "test.jsonl").read_bytes()
    assert (plain / "data" / "train.jsonl").read_bytes() == (flagged / "data" / "train.jsonl").read_bytes()  # flag keeps all

    issues = [json.loads(line) for line in open(dropped / "data" / "label_issues.jsonl", encoding="utf-8")]
    assert issues and {i["split"] for i in issues} <= {"train", "val"} and all(i["action"] == "drop" for i in issues)
    stats = json.loads((dropped / "data" / "stats.json").read_text())
    assert stats["dropped"]["label_issue"] == len(issues) == stats["steps"]["label_issues"]["flagged"]
    assert stats["read"] == stats["kept"] + stats["quarantined"] + sum(stats["dropped"].values())
    rejected = [json.loads(line) for line in open(dropped / "data" / "rejected" / "label_issue.jsonl", encoding="utf-8")]
    assert sorted(r["id"] for r in rejected) == sorted(i["id"] for i in issues)
    kept_ids = {json.loads(line)["id"] for s in ("train", "val") for line in open(dropped / "data" / f"{s}.jsonl", encoding="utf-8")}
    assert not kept_ids & {i["id"] for i in issues}
    html = (dropped / "report.html").read_text(encoding="utf-8")
    assert "Label issues" in html and issues[0]["text"][:20] in html

    only_train = [json.loads(line) for line in open(flagged / "data" / "label_issues.jsonl", encoding="utf-8")]
    assert {i["split"] for i in only_train} == {"train"}  # the default searches train only
