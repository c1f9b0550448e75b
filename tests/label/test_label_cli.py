"""`trainforge label queue` with a real (tiny) saved classifier, then `label import` of what came back."""

import json

import numpy as np
import pytest

from tests.serve.tiny_models import build_tiny_classifier, rule_label
from trainforge.cli import main
from trainforge.data.io import read_jsonl, write_jsonl
from trainforge.label.studio import parse_labelling_config

POOL = ["房间很干净", "服务很好", "hello world", "质量太差了", "the lazy dog", "kv cache batching", "再也不会买",
        "how are you today", "不错不错", "quick brown fox"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "tiny"
    build_tiny_classifier(run / "model")
    (run / "data").mkdir()
    write_jsonl(run / "data" / "train.jsonl", [{"id": f"t{k}", "text": t, "label": rule_label(t)} for k, t in
                                              enumerate(["很好", "hello"])])
    return run


def test_queue_writes_tasks_whose_predictions_match_the_config_and_honours_the_budget(run_dir, tmp_path):
    pool = tmp_path / "pool.jsonl"
    write_jsonl(pool, [{"id": f"p{k}", "text": t, "source": "pool"} for k, t in enumerate(POOL)])
    out = tmp_path / "label"
    args = ["label", "queue", str(run_dir), "--pool", str(pool), "--out", str(out), "--strategy", "entropy", "--batch-size", "4",
            "--budget", "6"]
    assert main(args) == 0
    tasks = json.loads((out / "tasks.json").read_text(encoding="utf-8"))
    schema = parse_labelling_config((out / "label_config.xml").read_text(encoding="utf-8"))
    assert len(tasks) == 4 and set(schema.labels) == {"negative", "positive"}
    for t in tasks:
        (pred,) = t["predictions"]
        (res,) = pred["result"]
        assert (res["from_name"], res["to_name"], res["type"]) == (schema.from_name, schema.to_name, "choices")
        assert res["value"]["choices"][0] in schema.labels and 0.5 <= pred["score"] <= 1
        assert pred["model_version"].startswith("tiny-")
    scores = [t["meta"]["query_score"] for t in tasks]
    assert scores == sorted(scores, reverse=True)  # most uncertain first

    # the entropy ranking is the model's own: recompute it from the saved classifier
    from trainforge.label.model import SavedClassifier

    probs, _ = SavedClassifier(run_dir / "model").score(POOL)
    ent = -(probs * np.log(probs)).sum(1)
    assert [t["data"]["trainforge_id"] for t in tasks] == [f"p{i}" for i in np.argsort(-ent, kind="stable")[:4]]

    # round 2: the budget leaves 2, and nothing queued before comes again
    assert main(args[:-4] + ["--strategy", "kcenter", "--batch-size", "4", "--budget", "6"]) == 0
    second = json.loads((out / "tasks.json").read_text(encoding="utf-8"))
    assert len(second) == 2 and not {t["data"]["trainforge_id"] for t in second} & {t["data"]["trainforge_id"] for t in tasks}
    assert [d["round"] for d in read_jsonl(out / "queued.jsonl")] == [1] * 4 + [2] * 2
    assert main(args) == 2  # spent: a user error, not a traceback

    # Label Studio annotates the first round and exports; import gives data-stage records
    export = [{"id": k, "data": t["data"], "predictions": t["predictions"], "annotations": [
        {"id": 10 + k, "completed_by": 1, "was_cancelled": False,
         "result": [{**t["predictions"][0]["result"][0], "value": {"choices": [rule_label(t["data"]["text"])]}}]}]}
        for k, t in enumerate(tasks)]
    (tmp_path / "export.json").write_text(json.dumps(export, ensure_ascii=False), encoding="utf-8")
    assert main(["label", "import", str(tmp_path / "export.json"), "-o", str(tmp_path / "in"),
                 "--label-config", str(out / "label_config.xml")]) == 0
    rows = read_jsonl(tmp_path / "in" / "labelled.jsonl")
    assert [(r["id"], r["label"]) for r in rows] == [(t["data"]["trainforge_id"], rule_label(t["data"]["text"])) for t in tasks]
    assert all(r["source"] == "pool" and set(r) >= {"id", "text", "label", "source", "label_studio"} for r in rows)
    assert json.loads((tmp_path / "in" / "import.json").read_text())["quarantined"] == 0


def test_import_needs_a_label_set(tmp_path):
    (tmp_path / "e.json").write_text("[]")
    assert main(["label", "import", str(tmp_path / "e.json"), "-o", str(tmp_path / "o")]) == 2
