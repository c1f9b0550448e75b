"""Label Studio round trip: tasks and config out, an export with every kind of annotation back in."""

import json

from trainforge.label.studio import ChoiceSchema, import_export, labelling_config, parse_labelling_config, prediction, task

SCHEMA = ChoiceSchema("sentiment", "text", ("negative", "positive"))


def _ann(aid, who, label=None, cancelled=False, from_name="sentiment"):
    result = [] if label is None else [{"from_name": from_name, "to_name": "text", "type": "choices",
                                        "value": {"choices": [label] if isinstance(label, str) else label}}]
    return {"id": aid, "completed_by": who, "was_cancelled": cancelled, "result": result, "ground_truth": False}


def _export(tasks_out):
    """What Label Studio exports after people annotate the tasks we wrote (ids assigned, annotations added)."""
    plan = [
        [_ann(1, 1, "positive")],                                              # one annotator
        [_ann(2, 1, "positive"), _ann(3, 2, "positive"), _ann(4, 3, "negative")],  # majority 2 of 3
        [_ann(5, 1, "positive"), _ann(6, 2, "negative")],                     # tie → quarantined
        [_ann(7, 1, "negative", cancelled=True), _ann(8, 2, "negative")],     # the cancelled one is skipped
        [_ann(9, 1, cancelled=True)],                                          # nothing usable → quarantined
        [_ann(10, 1, "neutral")],                                              # outside the label set → quarantined
        [_ann(11, 1, "positive", from_name="other"), _ann(12, 2, "negative")],  # another control's answer is not a vote
        [_ann(13, 1, ["positive", "negative"]), _ann(14, 2, "positive")],     # two choices in one annotation
    ]
    export = []
    for k, (t, anns) in enumerate(zip(tasks_out, plan), 1):
        export.append({"id": 100 + k, "data": t["data"], "annotations": anns, "predictions": t["predictions"],
                       "project": 1, "created_at": "2026-01-01T00:00:00Z"})
    export.append({"id": 200, "data": {"something_else": "x"}, "annotations": [_ann(15, 1, "positive")]})  # no text
    return export


def test_config_and_predictions_name_the_same_controls():
    xml = labelling_config(SCHEMA)
    assert parse_labelling_config(xml) == SCHEMA
    pred = prediction({"negative": 0.2, "positive": 0.8}, SCHEMA, "run-abc")
    assert pred == {"model_version": "run-abc", "score": 0.8, "result": [
        {"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": ["positive"]}}]}
    parsed = parse_labelling_config(xml)
    assert pred["result"][0]["from_name"] == parsed.from_name and pred["result"][0]["to_name"] == parsed.to_name
    assert set(pred["result"][0]["value"]["choices"]) <= set(parsed.labels)


def test_export_import_round_trip_keeps_every_annotation_and_quarantines_the_malformed(tmp_path):
    records = [{"id": f"r{k}", "text": f"评论 {k}", "label": "x", "source": "pool"} for k in range(8)]
    tasks_out = [task(r, SCHEMA, prediction({"negative": 0.4, "positive": 0.6}, SCHEMA, "v1")) for r in records]
    assert all(t["data"]["trainforge_id"] == r["id"] and "label" not in t["data"] for t, r in zip(tasks_out, records))
    path = tmp_path / "export.json"
    path.write_text(json.dumps(_export(tasks_out), ensure_ascii=False), encoding="utf-8")

    got = import_export(path, SCHEMA)
    labels = {r["id"]: r["label"] for r in got.records}
    assert labels == {"r0": "positive", "r1": "positive", "r3": "negative", "r6": "negative", "r7": "positive"}
    reasons = {q["task"]: q["reason"] for q in got.quarantined}
    assert reasons == {103: "tie", 105: "no_annotation", 106: "label_not_in_set", 200: "no_text"}
    assert got.tasks == len(got.records) + len(got.quarantined) == 9

    # every annotation a person made is on a record or in the quarantine, with what they chose
    kept = [a for r in got.records for a in r["label_studio"]["annotations"]]
    kept += [a for q in got.quarantined for a in q.get("annotations", [])]
    assert sorted(a["id"] for a in kept) == list(range(1, 15))  # 15 is inside the no-text task's raw
    assert '"id": 15' in next(q["raw"] for q in got.quarantined if q["reason"] == "no_text")

    s = got.summary()
    assert (s["annotations"], s["cancelled"], s["outside_label_set"], s["no_choice"]) == (15, 2, 1, 2)
    # agreement over tasks with two or more usable votes: 2/3 (task 2) and 1/2 (the tie)
    assert s["multi_annotated_tasks"] == 2 and abs(s["mean_agreement"] - (2 / 3 + 1 / 2) / 2) < 1e-4
    r1 = next(r for r in got.records if r["id"] == "r1")
    assert r1["label_studio"]["votes"] == {"positive": 2, "negative": 1} and r1["source"] == "pool"


def test_min_agreement_quarantines_a_weak_majority(tmp_path):
    t = task({"id": "a", "text": "还行"}, SCHEMA, None)
    anns = [_ann(1, 1, "positive"), _ann(2, 2, "positive"), _ann(3, 3, "negative")]
    path = tmp_path / "e.json"
    path.write_text(json.dumps([{"id": 1, "data": t["data"], "annotations": anns}]), encoding="utf-8")
    assert [r["label"] for r in import_export(path, SCHEMA, 0.5).records] == ["positive"]
    assert import_export(path, SCHEMA, 0.5).records[0]["source"] == "label-studio:e.json"  # no source in the task
    got = import_export(path, SCHEMA, 0.7)
    assert not got.records and got.quarantined[0]["reason"] == "low_agreement"
