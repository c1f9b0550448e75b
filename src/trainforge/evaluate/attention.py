"""Attention rollout and the last layer's attention, for a few examples.

Two figures per example, both drawn as the row a reader can follow — what the token the
classification head reads attends to, one bar per input token, every token label legible:
    <n>_rollout.png   rollout across all layers beside the last layer (mean of its heads)
    <n>_heads.png     the last layer's heads one by one (at most MAX_HEADS_SHOWN)
(T × T heatmaps of every layer and head were ~1 MB of a report with labels too small to read.)

Works for BERT-style encoders and Llama-style decoders with a classification head alike: the model
is loaded through AutoModelForSequenceClassification with attn_implementation="eager", because the
fused SDPA/flash kernels never materialise the (T, T) attention matrix and return none. It runs on
the device the eval stage scores on; the maps come back to the CPU to be drawn.

Rollout (Abnar & Zuidema, 2020): average the heads of each layer, add the residual path
(0.5·A + 0.5·I), renormalise rows, and multiply the layers: R = Â_L · … · Â_1. Row q of R is how
much each input token flows into position q at the top, where q is the token the classification
head reads ([CLS] at 0 for an encoder, the last token for a decoder).

A prompt-tuned model (train.method=prompt) is drawn with its learned virtual tokens as the first
positions, named <p0> <p1> …: they are real positions every layer attends to, and an encoder's
head reads the first of them. A prefix-tuned model's per-layer key/value prefixes are keys only:
each is given a row that attends to itself, so rollout shows how much flows into the prefix.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from trainforge.evaluate.plots import plot_attention_rows
from trainforge.models.load import virtual_tokens

MAX_HEADS_SHOWN = 4  # a 32-head model shows heads 0-3: each heatmap carries its tokens, so the grid is slow to draw


def load_eager_classifier(model_dir: Path):
    from trainforge.models.load import load_classifier

    return load_classifier(model_dir, attn_implementation="eager")


def classifier_position(model, n_tokens: int) -> int:
    """Decoder classifiers (Llama, GPT-2, Qwen: a `score` head) read the last token; encoders read 0.
    An ensemble's members share one architecture; its maps are the members' mean (models/ensemble.py)."""
    from trainforge.models.ensemble import first_member

    return n_tokens - 1 if hasattr(first_member(model), "score") else 0


def token_strings(tokenizer, text: str, max_tokens: int) -> tuple[list[int], list[str]]:
    """Token ids and, per token, the exact span of text it covers (readable for byte-level BPE,
    whose raw tokens look like 'ä¸Ń'); special tokens keep their own name. A character split into
    several byte tokens gives each of them the character's span: the first shows the character, the
    rest `·` (so 难 · · is one character in three tokens, not three characters)."""
    enc = tokenizer(text, truncation=True, max_length=max_tokens, return_offsets_mapping=True)
    ids = enc["input_ids"]
    raw = tokenizer.convert_ids_to_tokens(ids)
    special = set(tokenizer.all_special_ids)
    tokens, previous = [], None
    for tid, (start, end), r in zip(ids, enc["offset_mapping"], raw):
        if end > start and tid not in special:
            piece = "·" if (start, end) == previous else text[start:end].strip()
            previous = (start, end)
        else:
            piece, previous = r, None
        tokens.append(piece or "␣")
    return ids, tokens


def attention_maps(model, ids: list[int]) -> np.ndarray:
    """(L, H, T, T) attention probabilities for one unpadded example; T counts virtual tokens, if any."""
    import torch

    from trainforge.batching import model_device

    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids], device=model_device(model)), output_attentions=True)
    if not out.attentions or out.attentions[0] is None:
        raise RuntimeError(f"{type(model).__name__} returned no attentions (load it with attn_implementation='eager')")
    attn = torch.stack([a[0].float() for a in out.attentions]).cpu().numpy()  # L, H, queries, keys
    extra = attn.shape[-1] - attn.shape[-2]
    if extra > 0:  # prefix tuning: `extra` key-only positions in front; give each a self-attending row
        rows = np.zeros(attn.shape[:2] + (extra, attn.shape[-1]), dtype=attn.dtype)
        rows[..., np.arange(extra), np.arange(extra)] = 1.0
        attn = np.concatenate([rows, attn], axis=-2)
    return attn


def attention_rollout(attn: np.ndarray) -> np.ndarray:
    """(T, T) rollout from (L, H, T, T) attentions."""
    t = attn.shape[-1]
    rollout = np.eye(t)
    for layer in attn:
        a = 0.5 * layer.mean(0) + 0.5 * np.eye(t)
        a = a / a.sum(-1, keepdims=True)
        rollout = a @ rollout
    return rollout


def pick_examples(rows: list[dict], lengths: list[int], ids: list[str], n: int, max_tokens: int, seed: int) -> list[int]:
    """Indices: the requested ids first, then `n` sampled among examples that fit on the axes."""
    by_id = {r["id"]: i for i, r in enumerate(rows)}
    chosen = [by_id[i] for i in ids if i in by_id]
    fitting = [i for i, n_tok in enumerate(lengths) if 6 <= n_tok <= max_tokens and i not in chosen]
    pool = fitting or [i for i in range(len(rows)) if i not in chosen]
    chosen += random.Random(seed).sample(pool, min(n, len(pool)))
    return chosen


def draw_attention(model, tokenizer, rows: list[dict], labels: list[str], probs: np.ndarray, indices: list[int],
                   max_tokens: int, out_dir: Path) -> list[dict]:
    """For each example: attention/<n>_heads.png and attention/<n>_rollout.png; returns their index."""
    out_dir.mkdir(parents=True, exist_ok=True)
    drawn = []
    for n, i in enumerate(indices):
        row = rows[i]
        ids, tokens = token_strings(tokenizer, row["text"], max_tokens)
        attn = attention_maps(model, ids)
        kind, n_virtual = virtual_tokens(model)
        tokens = [f"<p{j}>" for j in range(n_virtual)] + tokens
        last = attn.shape[0] - 1
        layers = [last]
        heads = attn[last, :MAX_HEADS_SHOWN]  # (H_shown, T, T)
        rollout = attention_rollout(attn)
        # prompt: the head reads the sequence with the virtual tokens in front; prefix: the input's own positions
        query = classifier_position(model, len(tokens)) if kind != "prefix" else n_virtual + classifier_position(model, len(ids))
        pred = labels[int(probs[i].argmax())]
        title = f"{row['id']} · label {row['label']} · predicted {pred} ({probs[i].max():.2f})"
        heads_png, rollout_png = out_dir / f"{n:02d}_heads.png", out_dir / f"{n:02d}_rollout.png"
        reader = tokens[query]
        plot_attention_rows([("rollout (all layers)", rollout[query]), (f"layer {last} (mean of heads)", attn[last, :, query].mean(0))],
                            tokens, query, f"{title}\nwhat '{reader}' (read by the classifier) attends to", rollout_png)
        plot_attention_rows([(f"layer {last} · head {h}", heads[h, query]) for h in range(heads.shape[0])],
                            tokens, query, f"{title}\nlast layer, head by head", heads_png)
        order = [j for j in np.argsort(-rollout[query]) if j != query]  # its own residual share says nothing
        drawn.append({
            "id": row["id"], "text": row["text"][:200], "label": row["label"], "pred": pred,
            "tokens": tokens, "layers_shown": layers, "heads_shown": int(heads.shape[0]),
            "top_rollout_tokens": [[tokens[j], round(float(rollout[query, j]), 4)] for j in order[:5]],
            "heads_png": heads_png.name, "rollout_png": rollout_png.name,
        })
    return drawn
