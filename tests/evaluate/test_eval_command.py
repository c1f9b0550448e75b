"""`trainforge eval RUN [--against OTHER]` end to end on a tiny run: the files it writes and what they hold."""

from __future__ import annotations

import json
import shutil

import pytest

from trainforge.cli import main

from .conftest import write_run

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def evaluated(tiny, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    run = write_run(root, "tiny", tiny)
    assert main(["eval", str(run)]) == 0
    return run


def test_eval_writes_the_contract_and_the_analysis(evaluated):
    ev = evaluated / "eval"
    m = json.loads((ev / "metrics.json").read_text())
    assert {"split", "n", "labels", "model", "baseline", "model_beats_baseline"} <= set(m)
    assert {"accuracy", "macro_f1", "micro_f1", "auc_roc", "ece", "macro_precision", "macro_recall"} <= set(m["model"])
    assert m["baseline"]["name"] == "tfidf-lr" and "accuracy" in m["baseline"]
    assert set(m["per_class"]["model"]) == {"negative", "positive"}
    assert m["model"]["accuracy"] >= 0.9  # the tiny model learned its one-character rule
    for png in ["confusion_matrix.png", "reliability.png", "slices.png", "attention/00_heads.png", "attention/00_rollout.png"]:
        data = (ev / png).read_bytes()
        assert data[:8] == PNG and len(data) > 2000, png
    cm = json.loads((ev / "confusion_matrix.json").read_text())
    assert sum(map(sum, cm["matrix"])) == m["n"]
    analysis = json.loads((ev / "analysis.json").read_text())
    assert {s["field"] for s in analysis["slices"]} >= {"length_bucket", "source", "label", "domain"}
    errors = [json.loads(line) for line in (ev / "errors.jsonl").read_text().splitlines()]
    assert len(errors) == analysis["errors"] == round(m["n"] * (1 - m["model"]["accuracy"]))
    adv = json.loads((ev / "adversarial.json").read_text())
    assert adv["attack"]["attacked"] > 0 and 0 <= adv["attack"]["attack_success_rate"] <= 1
    assert set(adv["perturbations"]) == {"typos", "punctuation", "width", "whitespace"}
    assert "attack_success_rate" in m["robustness"]
    preds = [json.loads(line) for line in (ev / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == m["n"] and {"id", "label", "pred", "probabilities", "baseline_pred"} <= set(preds[0])
    html = (evaluated / "report.html").read_text()
    assert "Evaluation (test split" in html and "Robustness" in html and "Attention" in html


def test_eval_against_prints_the_planted_flips(evaluated, tmp_path, capsys):
    other = tmp_path / "other"
    shutil.copytree(evaluated, other)
    preds_path = other / "eval" / "predictions.jsonl"
    preds = [json.loads(line) for line in preds_path.read_text().splitlines()]
    planted = []
    for p in preds:  # make the other run wrong on three examples this run gets right
        if p["pred"] == p["label"] and len(planted) < 3:
            p["pred"] = "negative" if p["label"] == "positive" else "positive"
            planted.append(p["id"])
    preds_path.write_text("".join(json.dumps(p) + "\n" for p in preds))
    capsys.readouterr()
    assert main(["eval", str(evaluated), "--against", str(other)]) == 0
    out = capsys.readouterr().out
    assert "regression diff" in out and "3 fixed" in out and "0 broken" in out
    diff = json.loads((evaluated / "eval" / "regression.json").read_text())
    assert sorted(diff["fixed_ids"]) == sorted(planted) and diff["metrics"]["accuracy"]["delta"] > 0
    assert "Regression diff against" in (evaluated / "report.html").read_text()


def test_eval_against_a_run_without_predictions_is_a_user_error(evaluated, tmp_path, capsys):
    assert main(["eval", str(evaluated), "--against", str(tmp_path)]) == 2
    assert "trainforge eval" in capsys.readouterr().err


def test_unknown_slice_field_is_a_user_error(tiny, tmp_path, capsys):
    run = write_run(tmp_path, "bad", tiny, eval_section={"slice_fields": ["genre"], "attention_examples": 0,
                                                         "adversarial": {"samples": 0, "perturbation_samples": 0}})
    assert main(["eval", str(run)]) == 2
    assert "eval.slice_fields names 'genre'" in capsys.readouterr().err


def test_eval_on_a_llama_style_classifier(tmp_path):
    """The quickstart is moving to a decoder classifier: the same command must work through the Auto classes."""
    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from .conftest import LABELS, char_tokenizer, make_rows

    tok = char_tokenizer()
    torch.manual_seed(0)
    model = LlamaForSequenceClassification(LlamaConfig(
        vocab_size=len(tok), hidden_size=16, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
        intermediate_size=32, max_position_embeddings=64, pad_token_id=0, num_labels=2,
        id2label=dict(enumerate(LABELS)), label2id={lab: i for i, lab in enumerate(LABELS)}))
    run = write_run(tmp_path, "llama", (model, tok, make_rows(40, seed=1)), n_test=12,
                    eval_section={"attention_examples": 1, "adversarial": {"samples": 4, "perturbation_samples": 8}})
    assert main(["eval", str(run)]) == 0
    analysis = json.loads((run / "eval" / "analysis.json").read_text())
    drawn = analysis["attention"][0]
    assert drawn["tokens"][-1] == "[SEP]" and (run / "eval" / "attention" / drawn["rollout_png"]).stat().st_size > 2000
    assert json.loads((run / "eval" / "metrics.json").read_text())["n"] == 12
