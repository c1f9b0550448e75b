"""train.image: how images become pixels (task image_classification and clip)."""

from __future__ import annotations

from pydantic import Field

from trainforge.section import Section


class AugmentConfig(Section):
    """Training-time augmentation, drawn afresh each time an example is batched (PIL + numpy; no torchvision).
    Validation, test and serving see the plain resized image."""

    flip: float = Field(0.0, ge=0, le=1)
    """Probability of a horizontal flip. Leave 0 for digits and text: a flipped 2 is not a 2."""
    crop: float = Field(0.1, ge=0, lt=1)
    """Random crop keeping between (1 - crop) and 1 of each side, then resized back; 0 is off."""
    rotate: float = Field(10.0, ge=0, le=180)
    """Rotation by a uniform angle in ±rotate degrees (background filled white→ the image's border colour)."""
    noise: float = Field(0.02, ge=0, le=1)
    """Gaussian pixel noise, standard deviation as a share of the 0–255 range; 0 is off."""


class ImageConfig(Section):
    """Pixels the model sees: every image is converted to RGB and resized to size × size."""

    size: int = Field(32, ge=8)
    """Side in pixels after resizing; a saved model's processor keeps its own unless this is set differently."""
    augment: AugmentConfig = AugmentConfig()
    """Training-time augmentation (train split only)."""
