"""Plots written as PNG (matplotlib, Agg backend: no display needed).

Every function calls `setup_cjk_font()` first, so Chinese labels and tokens render as glyphs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trainforge.evaluate.fonts import setup_cjk_font


def _plt():
    setup_cjk_font()
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path, dpi: int = 110) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    fig.clf()
    import matplotlib.pyplot as plt

    plt.close(fig)


def plot_confusion(matrix: list[list[int]], labels: list[str], path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(labels), 1.0 + 0.8 * len(labels)))
    im = ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    top = max(max(r) for r in matrix) or 1
    for i, row in enumerate(matrix):
        for j, v in enumerate(row):
            ax.text(j, i, str(v), ha="center", va="center", color="white" if v > top / 2 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046)
    _save(fig, path)


def plot_reliability(bins_by_model: dict[str, list[dict]], path: Path) -> None:
    """Reliability diagram: accuracy against confidence per bin, one line per model."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    ax.plot([0, 1], [0, 1], ls=":", color="#888", label="perfectly calibrated")
    for name, bins in bins_by_model.items():
        pts = [(b["confidence"], b["accuracy"], b["n"]) for b in bins if b["n"]]
        if pts:
            xs, ys, _ = zip(*pts)
            ax.plot(xs, ys, "o-", label=name, markersize=4)
    ax.set_xlabel("confidence (top-class probability)")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", fontsize=8)
    _save(fig, path)


def plot_slices(slices: list[dict], path: Path) -> None:
    """Horizontal bars: model and baseline accuracy per slice, n in the label."""
    plt = _plt()
    names = [f"{s['field']}={s['value']} (n={s['n']})" for s in slices]
    y = np.arange(len(slices))
    fig, ax = plt.subplots(figsize=(7, 0.8 + 0.32 * len(slices)))
    ax.barh(y + 0.2, [s["model_accuracy"] for s in slices], height=0.4, color="#4e79a7", label="model")
    base = [s.get("baseline_accuracy") for s in slices]
    if any(b is not None for b in base):
        ax.barh(y - 0.2, [b or 0 for b in base], height=0.4, color="#bab0ac", label="baseline")
    ax.set_yticks(y, names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("accuracy")
    ax.legend(loc="lower right", fontsize=8)
    _save(fig, path)


def plot_attention_heads(attn: np.ndarray, layers: list[int], tokens: list[str], title: str, path: Path) -> None:
    """Grid of heatmaps: one row per shown layer, one column per head. attn: (L_shown, H, T, T)."""
    plt = _plt()
    n_layers, n_heads, t, _ = attn.shape
    cell = max(1.6, 0.16 * t)
    fig, axes = plt.subplots(n_layers, n_heads, figsize=(cell * n_heads, cell * n_layers), squeeze=False)
    fontsize = max(4, min(8, int(160 / max(t, 1))))
    for r in range(n_layers):
        for h in range(n_heads):
            ax = axes[r][h]
            ax.imshow(attn[r, h], cmap="viridis", vmin=0, vmax=max(1e-6, float(attn[r, h].max())))
            ax.set_xticks(range(t), tokens, rotation=90, fontsize=fontsize)
            ax.set_yticks(range(t), tokens, fontsize=fontsize)
            ax.set_title(f"layer {layers[r]} · head {h}", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    _save(fig, path, dpi=90)


def plot_rollout(rollout: np.ndarray, tokens: list[str], query: int, title: str, path: Path) -> None:
    """Attention rollout: the full (T, T) matrix and the row of the token the classifier reads."""
    plt = _plt()
    t = len(tokens)
    fontsize = max(5, min(9, int(200 / max(t, 1))))
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(2 + 0.3 * t * 2, 1.5 + 0.28 * t), gridspec_kw={"width_ratios": [1.3, 1]})
    ax0.imshow(rollout, cmap="magma")
    ax0.set_xticks(range(t), tokens, rotation=90, fontsize=fontsize)
    ax0.set_yticks(range(t), tokens, fontsize=fontsize)
    ax0.set_title("attention rollout (all layers)", fontsize=9)
    ax1.barh(range(t), rollout[query], color="#e15759")
    ax1.set_yticks(range(t), tokens, fontsize=fontsize)
    ax1.invert_yaxis()
    ax1.set_title(f"what '{tokens[query]}' (read by the classifier) attends to", fontsize=9)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    _save(fig, path, dpi=90)
