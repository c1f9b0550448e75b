"""CLIP pieces shared by the task, the eval and the CLIP-score function: the pair processor and the embeddings.

A `PairProcessor` is what a CLIP model directory needs beside its weights: the tokenizer (a BPE trained on
the captions for a fresh preset, or the directory's own) and the image processor. It saves both, so any
CLIP directory trainforge writes loads with transformers alone (AutoTokenizer + the Pil image processor).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class PairProcessor:
    tokenizer: object
    image_processor: object

    @property
    def pad_token_id(self) -> int:
        return self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0

    def __len__(self) -> int:
        return len(self.tokenizer)

    def save_pretrained(self, path) -> None:
        self.tokenizer.save_pretrained(path)
        self.image_processor.save_pretrained(path)

    @classmethod
    def from_dir(cls, path: Path, max_length: int | None = None) -> "PairProcessor":
        from trainforge.models.tokenizer import load_tokenizer
        from trainforge.vision.processor import load_processor

        return cls(load_tokenizer(path, max_length), load_processor(path))


def features(out) -> "torch.Tensor":  # noqa: F821
    """get_image_features / get_text_features: a tensor in transformers 4, an output object (pooler_output) in 5."""
    return out if hasattr(out, "shape") else out.pooler_output


def embed(model, processor: PairProcessor, images: list, texts: list[str], batch_size: int = 64,
          max_length: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(image embeddings, text embeddings), projected, unnormalised, float32 on the CPU."""
    import torch

    from trainforge.batching import model_device
    from trainforge.vision.processor import pixel_values

    model.eval()
    device = model_device(model)
    img, txt = [], []
    with torch.no_grad():
        for s in range(0, len(images), batch_size):
            px = pixel_values(processor.image_processor, images[s:s + batch_size]).to(device)
            img.append(features(model.get_image_features(pixel_values=px)).float().cpu())
        for s in range(0, len(texts), batch_size):
            tok = processor.tokenizer(texts[s:s + batch_size], padding=True, truncation=True, max_length=max_length,
                                      return_tensors="pt")
            txt.append(features(model.get_text_features(input_ids=tok["input_ids"].to(device),
                                                        attention_mask=tok["attention_mask"].to(device))).float().cpu())
    return torch.cat(img).numpy(), torch.cat(txt).numpy()


def load_clip(model_dir: Path, **kwargs):
    """A CLIP or Chinese-CLIP model from a directory (an adapter directory merges on load)."""
    from transformers import AutoModel

    from trainforge.models.load import _load

    return _load(Path(model_dir), AutoModel, kwargs)


def clip_score_of(model_dir: Path, rows: list[dict], size: int | None = None) -> float:
    """CLIP score of an image–caption set ({image, text} records) under any CLIP model directory."""
    from trainforge.vision.images import load_rgb
    from trainforge.vision.processor import processor_size
    from trainforge.vision.retrieval import clip_score

    processor = PairProcessor.from_dir(Path(model_dir))
    model = load_clip(Path(model_dir))
    images = load_rgb(rows, size or processor_size(processor.image_processor))
    img, txt = embed(model, processor, images, [r["text"] for r in rows])
    return clip_score(img, txt)
