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


def plot_attention_rows(panels: list[tuple[str, np.ndarray]], tokens: list[str], query: int, title: str, path: Path) -> None:
    """What the token the classifier reads attends to, one panel per (name, weights over tokens), the tokens
    down a shared axis at a size every label can be read at (10 pt, one row each), the largest bar of each
    panel labelled with its value."""
    plt = _plt()
    t = len(tokens)
    fig, axes = plt.subplots(1, len(panels), figsize=(1.2 + 2.6 * len(panels), 1.1 + 0.24 * t), sharey=True, squeeze=False)
    for ax, (name, w) in zip(axes[0], panels):
        colours = ["#bab0ac" if j == query else "#e15759" for j in range(t)]
        ax.barh(range(t), w, color=colours)
        ax.set_title(name, fontsize=10)
        ax.set_xlim(0, max(1e-6, float(np.max(w))) * 1.25)
        ax.tick_params(axis="x", labelsize=8)
        top = int(np.argmax([x if j != query else -1 for j, x in enumerate(w)]))
        ax.text(w[top], top, f" {w[top]:.2f}", va="center", fontsize=8)
        ax.grid(axis="x", alpha=0.3)
    axes[0][0].set_yticks(range(t), tokens, fontsize=10)
    axes[0][0].invert_yaxis()
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path, dpi=90)
