"""Evaluation of a causal LM (train.task=sft, or any *ForCausalLM in model/).

Language modelling: the model's perplexity on the split's texts, per token and per character,
beside a character trigram Kneser–Ney LM trained on the train split (ngram_lm.py). Per-character
perplexity is the fair comparison: exp(total NLL of a text / its characters) does not depend
on how a tokenizer cuts the text.

Generation (train.task=sft): greedy answers to the split's prompts scored against the expected
answers with BLEU, ROUGE-1/2/L and exact match (generation.py), beside a retrieval baseline: the
answer of the most similar training prompt (TF-IDF over character 1–3-grams, cosine).
"""

from __future__ import annotations

import math

import numpy as np

from trainforge.console import console, progress_bar
from trainforge.evaluate.generation import generation_metrics


def text_nll(model, tokenizer, texts: list[str], max_length: int, batch_size: int = 16) -> tuple[float, int, list[int]]:
    """(total NLL in nats over every predicted token, tokens predicted, characters covered per text
    (less than its length when max_length cut it))."""
    import torch

    from trainforge.batching import model_device

    model.eval()
    device = model_device(model)
    total, n_tok, covered = 0.0, 0, []
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    seqs = []
    for t in texts:
        enc = tokenizer(t, add_special_tokens=False, truncation=True, max_length=max_length - len(bos) - len(eos),
                        return_offsets_mapping=True)
        ends = [e for _, e in enc["offset_mapping"] if e]
        seqs.append(bos + enc["input_ids"] + eos)
        covered.append(max(ends) if ends else 0)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    with torch.no_grad():
        for i in range(0, len(seqs), batch_size):
            chunk = [s for s in seqs[i : i + batch_size] if len(s) > 1]
            if not chunk:
                continue
            width = max(map(len, chunk))
            ids = torch.full((len(chunk), width), pad)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for r, s in enumerate(chunk):
                ids[r, : len(s)], mask[r, : len(s)] = torch.tensor(s), 1
            ids, mask = ids.to(device), mask.to(device)  # no copy on the CPU
            # the last `width` positions: a prompt-tuned model prepends its virtual tokens' logits
            logits = model(input_ids=ids, attention_mask=mask).logits[:, -width:][:, :-1].float()  # B, T-1, V
            target, tmask = ids[:, 1:], mask[:, 1:].bool()
            nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), target, reduction="none")
            total += float(nll[tmask].sum())
            n_tok += int(tmask.sum())
    return total, n_tok, covered


def retrieval_answers(train_prompts: list[str], train_answers: list[str], prompts: list[str]) -> list[str]:
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True)
    a = vec.fit_transform(train_prompts)
    sims = vec.transform(prompts) @ a.T
    return [train_answers[int(np.asarray(sims[i].todense()).argmax())] for i in range(len(prompts))]


def evaluate_lm(job, prompt_format=None) -> dict:
    """job: a tasks.EvalJob. Writes eval/metrics.json for a causal LM ({"task", "model": {...}, "baseline": {...},
    "compared": [...]}) and returns the flat metrics. prompt_format (SFT): how the split's records become
    prompts and expected answers, as training framed them (model/trainforge.json)."""
    import json

    import torch

    from trainforge.device import describe
    from trainforge.evaluate.ngram_lm import CharNgramLM
    from trainforge.models.load import load_causal_lm
    from trainforge.models.tokenizer import load_tokenizer

    rows, train_rows, generate_n = job.rows, job.train_rows, job.cfg.generate_examples
    device = job.device if job.device is not None else torch.device("cpu")
    tokenizer = load_tokenizer(job.model_dir)
    model = load_causal_lm(job.model_dir).to(device)
    max_length = job.info.max_length or 512
    texts = [r["text"] for r in rows if r.get("text")]
    nll, n_tok, covered = text_nll(model, tokenizer, texts, max_length)
    n_chars = sum(covered) + len(texts)  # + one end of text each, as the n-gram LM scores it
    ngram = CharNgramLM(3).fit([r["text"] for r in train_rows if r.get("text")])
    base_nll = base_chars = 0
    for t, c in zip(texts, covered):  # the same characters the model saw
        a, b = ngram.nll(t[:c])
        base_nll, base_chars = base_nll + a, base_chars + b
    model_m = {"char_perplexity": math.exp(nll / max(1, n_chars)), "token_perplexity": math.exp(nll / max(1, n_tok))}
    base_m = {"char_perplexity": math.exp(base_nll / max(1, base_chars))}
    names = ["char-3gram-kneser-ney"]
    if prompt_format is not None and generate_n:
        from trainforge.chat import generate_examples, prompt_and_response

        with progress_bar("generate", total=None, unit="answers"):
            gens = generate_examples(model, tokenizer, rows, prompt_format, generate_n)
        preds, refs = [g["generated"] for g in gens], [g["expected"] for g in gens]
        n_generated = len(gens)
        model_m.update({k: v for k, v in generation_metrics(preds, refs).items() if k != "bleu_tokenizer"})
        pairs = [prompt_and_response(r, prompt_format) for r in train_rows]
        base_preds = retrieval_answers([p for p, _ in pairs], [a for _, a in pairs], [g["prompt"] for g in gens])
        base_m.update({k: v for k, v in generation_metrics(base_preds, refs).items() if k != "bleu_tokenizer"})
        names.append("tfidf-retrieval")
    model_m = {k: round(v, 5) for k, v in model_m.items()}
    base_m = {k: round(v, 5) for k, v in base_m.items()}
    lower = {"char_perplexity", "token_perplexity"}
    compared = [{"metric": k, "model": v, "baseline": base_m[k], "better": v < base_m[k] if k in lower else v > base_m[k]}
                for k, v in model_m.items() if k in base_m]
    better = {c["metric"]: c["better"] for c in compared}
    console.print(f"          model char perplexity {model_m['char_perplexity']:.2f} {'beats' if better['char_perplexity'] else 'LOSES TO'} the "
                  f"character trigram LM's {base_m['char_perplexity']:.2f} on {len(texts):,} texts")
    # an SFT model is judged on the answers it was trained to give; its perplexity on raw text stays beside them
    headline = "exact_match" if "exact_match" in model_m else "char_perplexity"
    if headline == "exact_match":
        console.print(f"          answers: exact match {model_m['exact_match']:.4f} {'beats' if better['exact_match'] else 'LOSES TO'} "
                      f"the retrieval baseline's {base_m['exact_match']:.4f} on {n_generated:,} prompts")
    metrics = {"split": job.cfg.split, "task": "sft" if len(names) > 1 else "language_modeling", "n": len(rows), "labels": [],
               "model": model_m, "baseline": {"name": " + ".join(names), **base_m}, "model_beats_baseline": better[headline],
               "headline": headline, "compared": compared, "device": describe(device)}
    (job.out / "metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False))
    flat = {f"model_{k}": v for k, v in metrics["model"].items()}
    flat.update({f"baseline_{k}": v for k, v in metrics["baseline"].items() if isinstance(v, float)})
    return flat
