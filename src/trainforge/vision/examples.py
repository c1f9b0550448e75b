"""Examples for the training loop when the input is an image, not a token sequence.

train/loop.py reads `len(enc)`, `enc.input_ids[i]` (length-bucketed batches and the memory estimate use
each example's sequence length) and `enc.token_labels`; a `PixelExamples` answers those with the number of
positions the model runs per image — patches + 1 for a ViT, 1 for a conv net — so every image has the same
"length", bucketing degenerates to a plain shuffle, and the activation estimate counts the patches.

Training examples keep the resized RGB image and are augmented afresh each time they are batched;
held-out examples keep the processed pixels, computed once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class PixelExamples:
    images: list
    """RGB PIL images at the model's size (before augmentation and normalisation)."""
    labels: list[int]
    positions: int = 1
    """Sequence positions the model runs per image (patches + 1 for ViT, 1 for a conv net)."""
    pixels: object | None = None
    """(N, 3, H, W) processed pixels (held-out examples); None: processed per batch (training)."""
    extra: dict = field(default_factory=dict)
    """Per-example side data a task keeps (CLIP: token ids and masks)."""
    token_labels: None = None

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def input_ids(self) -> list[range]:
        return [range(self.positions)] * len(self.labels)


def patch_positions(model) -> int:
    """Positions a ViT-like model runs per image (1 for a model without patches)."""
    cfg = getattr(model, "config", None)
    vision = getattr(cfg, "vision_config", cfg)
    patch, size = getattr(vision, "patch_size", None), getattr(vision, "image_size", None)
    if not patch or not size or getattr(cfg, "model_type", "") in ("mobilenet_v2", "efficientnet"):
        return 1
    return (size // patch) ** 2 + 1


def seeded_rng(seed: int, step_key: int) -> np.random.Generator:
    return np.random.default_rng([seed, step_key])
