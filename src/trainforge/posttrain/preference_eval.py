"""Eval of a preference-tuned model (task dpo): did DPO make the model answer right more often than its SFT start?

    label-answer accuracy   the greedy answer to a labelled held-out prompt IS the correct label's answer
                            (normalised exact match, evaluate/generation.py), for
        dpo                 model/
        sft_reference       model/reference/ (the SFT model DPO started from), when the run kept it
        majority baseline   always the most common training label's answer
    valid-answer rate       the answer is one of the label answers at all (a model that rambles scores 0 on both)

Everything the SFT eval reports (perplexity beside a trigram LM, BLEU/ROUGE/exact match beside retrieval) comes
first, from evaluate/lm.py, into the same eval/metrics.json; the label-answer block is added beside it and
becomes the headline. Both models' answers go to eval/preference_answers.jsonl.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from trainforge.console import console


def label_answer_accuracy(answers: list[str], expected: list[str], label_answers: list[str]) -> tuple[float, float]:
    """(share equal to the expected answer, share equal to any label's answer), both after normalize_for_match."""
    from trainforge.evaluate.generation import normalize_for_match

    valid = {normalize_for_match(a) for a in label_answers}
    got = [normalize_for_match(a) for a in answers]
    n = max(1, len(got))
    right = sum(g == normalize_for_match(e) for g, e in zip(got, expected))
    return right / n, sum(g in valid for g in got) / n


def greedy_answers(model_dir: Path, tokenizer, rows: list[dict], fmt, device) -> list[dict]:
    from trainforge.chat import generate_examples
    from trainforge.models.load import load_causal_lm

    model = load_causal_lm(model_dir).to(device)
    return generate_examples(model, tokenizer, rows, fmt, len(rows))


def evaluate_preference(job, fmt, reference_dir: Path) -> dict:
    import torch

    from trainforge.evaluate.lm import evaluate_lm
    from trainforge.models.tokenizer import load_tokenizer

    flat = evaluate_lm(job, prompt_format=fmt)
    labelled = [r for r in job.rows if r.get("label") is not None and not r.get(fmt.response_field)]
    labelled = labelled[: job.cfg.generate_examples]
    if not labelled:
        return flat
    device = job.device if job.device is not None else torch.device("cpu")
    tokenizer = load_tokenizer(job.model_dir)
    train_labels = Counter(str(r["label"]) for r in job.train_rows if r.get("label") is not None)
    label_answers = sorted({fmt.label_names.get(lab, lab) for lab in train_labels} | set(fmt.label_names.values()))
    majority = fmt.label_names.get(train_labels.most_common(1)[0][0], train_labels.most_common(1)[0][0]) if train_labels else ""
    expected = [fmt.label_names.get(str(r["label"]), str(r["label"])) for r in labelled]

    dpo = greedy_answers(Path(job.model_dir), tokenizer, labelled, fmt, device)
    block = {"n": len(labelled), "label_answers": label_answers}
    acc, valid = label_answer_accuracy([g["generated"] for g in dpo], expected, label_answers)
    block["dpo"] = {"label_answer_accuracy": round(acc, 5), "valid_answer_rate": round(valid, 5)}
    sft = None
    if (reference_dir / "config.json").is_file():
        sft = greedy_answers(reference_dir, tokenizer, labelled, fmt, device)
        s_acc, s_valid = label_answer_accuracy([g["generated"] for g in sft], expected, label_answers)
        block["sft_reference"] = {"label_answer_accuracy": round(s_acc, 5), "valid_answer_rate": round(s_valid, 5)}
    base_acc, _ = label_answer_accuracy([majority] * len(expected), expected, label_answers)
    block["majority_baseline"] = {"answer": majority, "label_answer_accuracy": round(base_acc, 5)}

    path = job.out / "metrics.json"
    metrics = json.loads(path.read_text(encoding="utf-8"))
    metrics["task"] = "dpo"
    metrics["label_answers"] = block
    metrics["model"]["label_answer_accuracy"] = block["dpo"]["label_answer_accuracy"]
    metrics["baseline"]["label_answer_accuracy"] = block["majority_baseline"]["label_answer_accuracy"]
    metrics["baseline"]["name"] += " + majority-label"
    metrics["compared"].append({"metric": "label_answer_accuracy", "model": acc, "baseline": base_acc, "better": acc > base_acc})
    metrics["headline"], metrics["model_beats_baseline"] = "label_answer_accuracy", acc > base_acc
    path.write_text(json.dumps(metrics, indent=2, ensure_ascii=False), encoding="utf-8")
    with open(job.out / "preference_answers.jsonl", "w", encoding="utf-8") as f:
        for i, g in enumerate(dpo):
            f.write(json.dumps({"id": g["id"], "prompt": g["prompt"], "expected": g["expected"], "dpo": g["generated"],
                                "sft": sft[i]["generated"] if sft else None}, ensure_ascii=False) + "\n")
    sft_text = (f", its SFT reference {block['sft_reference']['label_answer_accuracy']:.4f}" if sft else
                " (no model/reference/ to compare with)")
    console.print(f"          label-answer accuracy on {len(labelled):,} prompts: DPO {acc:.4f}{sft_text}, "
                  f"always '{majority}' {base_acc:.4f}")
    flat.update({"model_label_answer_accuracy": round(acc, 5), "baseline_label_answer_accuracy": round(base_acc, 5)})
    if sft:
        flat["sft_label_answer_accuracy"] = block["sft_reference"]["label_answer_accuracy"]
    return flat
