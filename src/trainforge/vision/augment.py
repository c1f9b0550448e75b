"""Training-time image augmentation with PIL and numpy (torchvision has no build beside this torch).

Each call draws from the generator it is given, so a seeded run augments the same way every time:

    flip     horizontal mirror with probability p
    crop     keep a random (1 - crop … 1) share of each side, resize back to the original size
    rotate   uniform angle in ±rotate degrees; the corners are filled with the image's border colour
             (its median edge pixel), so a white page stays white and a dark scan stays dark
    noise    additive Gaussian noise, sigma = noise × 255, clipped to 0..255
"""

from __future__ import annotations

import numpy as np

from trainforge.vision.config import AugmentConfig


def border_colour(a: np.ndarray) -> tuple[int, ...]:
    """Median of the outermost pixels, per channel (H, W, C uint8)."""
    edge = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    return tuple(int(v) for v in np.median(edge, axis=0))


def augment(image, cfg: AugmentConfig, rng: np.random.Generator):
    """An RGB PIL image → an augmented RGB PIL image of the same size."""
    from PIL import Image

    w, h = image.size
    if cfg.flip and rng.random() < cfg.flip:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if cfg.crop:
        keep = rng.uniform(1.0 - cfg.crop, 1.0)
        cw, ch = max(1, int(round(w * keep))), max(1, int(round(h * keep)))
        x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        image = image.crop((x0, y0, x0 + cw, y0 + ch)).resize((w, h), Image.Resampling.BILINEAR)
    if cfg.rotate:
        angle = float(rng.uniform(-cfg.rotate, cfg.rotate))
        fill = border_colour(np.asarray(image))
        image = image.rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=fill)
    if cfg.noise:
        a = np.asarray(image, dtype=np.float32)
        a = a + rng.normal(0.0, cfg.noise * 255.0, size=a.shape).astype(np.float32)
        image = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "RGB")
    return image
