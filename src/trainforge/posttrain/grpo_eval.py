"""Scoring a GRPO model on held-out verifiable prompts, beside the SFT model it started from and a trivial baseline.

    per prompt   greedy answer ──▶ exact match (the correctness reward = 1), format reward, length in tokens
                 k samples at the rollout temperature ──▶ pass@k (any of the k is correct; the unbiased
                 estimator 1 − C(n−c, k)/C(n, k) with n = k samples reduces to that)
    baseline     the training split's most frequent answer, for every prompt (what a model that ignores the
                 question scores); no format, so its format rate is 0

All generation goes through serve's batched KV-cache engine (posttrain/rollouts.py), as in training.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from trainforge.posttrain.rewards import BUILTIN


def correctness_reward(names: list[str]) -> str:
    """The reward that says "correct": the first exact_answer / label_match configured, else exact_answer."""
    return next((n for n in names if n in ("exact_answer", "label_match")), "exact_answer")


def score_model(model, tokenizer, rows: list[dict], prompt_field: str, correct: str, k: int, max_new_tokens: int,
                temperature: float, seed: int, batch_size: int = 64) -> dict[str, float]:
    from trainforge.chat import prompt_ids
    from trainforge.posttrain.rollouts import generate

    fn = BUILTIN[correct]
    prompts = [r[prompt_field] for r in rows]
    columns = {key: [r.get(key) for r in rows] for key in sorted({k for r in rows for k in r} - {prompt_field})}
    ids = [prompt_ids(tokenizer, p) for p in prompts]
    greedy = generate(model, tokenizer, ids, max_new_tokens, 0.0, 1.0, [seed] * len(ids), batch_size)
    exact = fn(prompts, greedy.texts, **columns)
    fmt = BUILTIN["think_format"](prompts, greedy.texts)
    rep = [i for i in range(len(ids)) for _ in range(k)]
    sampled = generate(model, tokenizer, [ids[i] for i in rep], max_new_tokens, temperature, 1.0,
                       [seed * 1_000_003 + j for j in range(len(rep))], batch_size)
    hits = fn([prompts[i] for i in rep], sampled.texts, **{c: [v[i] for i in rep] for c, v in columns.items()})
    n = len(rows)
    return {"exact_match": sum(e or 0 for e in exact) / n,
            f"pass_at_{k}": sum(any(hits[i * k + j] for j in range(k)) for i in range(n)) / n,
            "format_rate": sum(fmt) / n,
            "mean_completion_tokens": sum(map(len, greedy.completion_ids)) / n,
            "samples": [{"prompt": p, "generated": t, "reference": r.get("reference"), "correct": bool(e)}
                        for p, t, r, e in list(zip(prompts, greedy.texts, rows, exact))[:20]]}


def majority_baseline(train_rows: list[dict], rows: list[dict], prompt_field: str, correct: str, k: int) -> dict:
    answers = Counter(str(r.get("reference", r.get("label"))) for r in train_rows)
    guess = answers.most_common(1)[0][0] if answers else ""
    fn = BUILTIN[correct]
    prompts = [r[prompt_field] for r in rows]
    columns = {key: [r.get(key) for r in rows] for key in ("reference", "label")}
    hits = fn(prompts, [guess] * len(rows), **columns)
    rate = sum(h or 0 for h in hits) / max(1, len(rows))
    return {"exact_match": rate, f"pass_at_{k}": rate, "format_rate": 0.0, "answer": guess}


def evaluate_grpo(job, grpo_meta: dict) -> dict[str, float]:
    """job: a tasks.EvalJob. Writes eval/metrics.json: the GRPO model, the SFT model (model/sft/, when the run
    trained one) and the majority-answer baseline on the same held-out prompts."""
    import torch

    from trainforge.console import console
    from trainforge.device import describe
    from trainforge.models.load import load_causal_lm
    from trainforge.models.tokenizer import load_tokenizer

    device = job.device if job.device is not None else torch.device("cpu")
    prompt_field, k = grpo_meta["prompt_field"], grpo_meta["eval_samples"]
    correct = correctness_reward(grpo_meta["rewards"])
    from trainforge.posttrain.grpo_loop import frame_labelled

    frame = lambda rs: frame_labelled(rs, prompt_field, grpo_meta.get("template", "{text}"), grpo_meta.get("label_names", {}))  # noqa: E731
    rows = [r for r in frame(job.rows) if isinstance(r.get(prompt_field), str)][: grpo_meta["eval_prompts"]]
    train_rows = frame(job.train_rows)
    args = dict(prompt_field=prompt_field, correct=correct, k=k, max_new_tokens=grpo_meta["max_new_tokens"],
                temperature=grpo_meta["temperature"], seed=job.seed)
    scored = {}
    for name, path in (("model", Path(job.model_dir)), ("sft", Path(job.model_dir) / "sft")):
        if (path / "config.json").is_file():
            model = load_causal_lm(path).to(device)
            scored[name] = score_model(model, load_tokenizer(path), rows, **args)
    base = majority_baseline(train_rows, rows, prompt_field, correct, k)
    samples = scored["model"].pop("samples")
    scored.get("sft", {}).pop("samples", None)
    (job.out / "generations.jsonl").write_text("".join(json.dumps(s, ensure_ascii=False) + "\n" for s in samples),
                                              encoding="utf-8")
    model_m = {m: round(v, 5) for m, v in scored["model"].items()}
    compared = [{"metric": m, "model": model_m[m], "baseline": round(base[m], 5), "better": model_m[m] > base[m]}
                for m in ("exact_match", f"pass_at_{k}", "format_rate")]
    metrics = {"split": job.cfg.split, "task": "grpo", "n": len(rows), "labels": [], "model": model_m,
               "baseline": {"name": "majority-answer", **{m: round(v, 5) if isinstance(v, float) else v for m, v in base.items()}},
               "model_beats_baseline": compared[0]["better"], "headline": "exact_match", "compared": compared,
               "correctness_reward": correct, "device": describe(device)}
    if "sft" in scored:
        metrics["sft"] = {m: round(v, 5) for m, v in scored["sft"].items()}
        metrics["compared_to_sft"] = [{"metric": m, "model": model_m[m], "sft": metrics["sft"][m]}
                                      for m in ("exact_match", f"pass_at_{k}", "format_rate", "mean_completion_tokens")]
    (job.out / "metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False))
    sft_text = f", SFT model {metrics['sft']['exact_match']:.3f}" if "sft" in metrics else ""
    console.print(f"          answers: exact match {model_m['exact_match']:.3f}{sft_text}, majority-answer baseline "
                  f"{base['exact_match']:.3f}; pass@{k} {model_m[f'pass_at_{k}']:.3f}; format {model_m['format_rate']:.2f} "
                  f"on {len(rows)} prompts")
    flat = {f"model_{m}": v for m, v in model_m.items()}
    flat.update({f"sft_{m}": v for m, v in metrics.get("sft", {}).items()})
    flat.update({f"baseline_{m}": v for m, v in base.items() if isinstance(v, float)})
    return flat
