"""Image processors: transformers' PIL implementations, always with an explicit size.

transformers 5's plain names (ViTImageProcessor, CLIPImageProcessor) are the torchvision-backed
versions; without torchvision they warn and fall back. We name the `*ImageProcessorPil` classes
directly, and read a saved processor through the class its preprocessor_config.json records (the
Pil one when it names the torchvision one). Every image is converted to RGB before it reaches the
processor (vision/images.py): the processor's 3-element mean fails on a greyscale array.

    image classification   ViTImageProcessorPil: resize to size × size, rescale to 0..1, normalise
                           with mean = std = 0.5 (any family: the model learns from these pixels)
    clip                   CLIPImageProcessorPil: shortest edge → size, centre crop size × size,
                           CLIP's mean/std
"""

from __future__ import annotations

import json
from pathlib import Path

from trainforge.errors import UserError

PREPROCESSOR_FILE = "preprocessor_config.json"


def classification_processor(size: int):
    from transformers import ViTImageProcessorPil

    return ViTImageProcessorPil(size={"height": size, "width": size}, do_resize=True, do_rescale=True, do_normalize=True,
                                image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])


def clip_processor(size: int):
    from transformers import CLIPImageProcessorPil

    return CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size})


def load_processor(model_dir: Path):
    """The image processor saved beside a model (model/preprocessor_config.json)."""
    import transformers

    path = Path(model_dir) / PREPROCESSOR_FILE
    if not path.is_file():
        raise UserError(f"{model_dir}: no {PREPROCESSOR_FILE}; an image model directory needs its image processor "
                        f"(re-run the train stage, or save one with processor.save_pretrained)")
    name = json.loads(path.read_text(encoding="utf-8")).get("image_processor_type", "ViTImageProcessorPil")
    if not name.endswith("Pil") and hasattr(transformers, name + "Pil"):
        name += "Pil"
    cls = getattr(transformers, name, None)
    if cls is None:
        raise UserError(f"{path}: image_processor_type {name!r} is not a transformers class")
    return cls.from_pretrained(model_dir)


def processor_size(processor) -> int:
    """The square side a processor produces."""
    crop = getattr(processor, "crop_size", None)
    size = crop if getattr(processor, "do_center_crop", False) and crop else processor.size
    size = size if isinstance(size, dict) else dict(size)
    return int(size.get("height") or size.get("shortest_edge"))


def pixel_values(processor, images: list):
    """RGB PIL images → a float tensor (B, 3, H, W)."""
    return processor(images=images, return_tensors="pt")["pixel_values"]
