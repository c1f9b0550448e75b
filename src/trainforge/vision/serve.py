"""Serving an image classifier: /v1/classify with images, and chat messages whose content holds an image_url.

An image arrives as a data URL (data:image/png;base64,…); the app decodes it before anything is queued
(`decode_request_images`), so a bad payload is a 400 naming the input and the reason, never a model error.
Remote http(s) URLs are refused: the server does not fetch from the network on a client's behalf.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


def decode_request_images(refs: list[str], param: str):
    """RGB PIL images, or an APIError(400) naming the first bad one."""
    from trainforge.serve.protocol import APIError
    from trainforge.vision.images import ImageError, image_bytes, open_image, to_rgb

    out = []
    for i, ref in enumerate(refs):
        if not ref.startswith(("data:", "http://", "https://")):
            raise APIError(400, f"{param}[{i}]: send the image as a data URL (data:image/png;base64,...)", param,
                           "invalid_image")
        try:
            out.append(to_rgb(open_image(image_bytes(ref), f"{param}[{i}]")))
        except ImageError as e:
            raise APIError(400, f"{param}[{i}]: {e.reason}" + (f" ({e.detail})" if e.detail else ""), param, e.reason) from None
    return out


@dataclass
class ImageClassifierEngine:
    """An image classifier: RGB PIL images → probabilities over its labels."""

    model: object
    processor: object
    labels: list[str]
    kind: str = "classifier"
    input_kind: str = "image"
    max_length: int = 1

    @property
    def device(self):
        from trainforge.batching import model_device

        return model_device(self.model)

    @classmethod
    def load(cls, path: Path, device=None, dtype=None) -> "ImageClassifierEngine":
        from trainforge.tasks import task_for

        task, info = task_for(path)
        if (path / "trainforge_compression.json").is_file():
            from trainforge.vision.compress import load_image_variant

            model = load_image_variant(path)
            device = dtype = None  # INT8 runs torch's CPU kernels
        else:
            model = task.load_model(path)
        if device is not None:
            model = model.to(device=device, dtype=dtype)
        return cls(model.eval(), task.load_processor(path), list(info.labels))

    def count_tokens(self, image) -> int:
        return 1  # an image is one input; usage.prompt_tokens counts images

    def token_ids(self, texts):
        return [[] for _ in texts]

    def classify(self, images: list) -> list[dict[str, float]]:
        import torch

        from trainforge.vision.processor import pixel_values, processor_size

        side = processor_size(self.processor)
        px = pixel_values(self.processor, [im.resize((side, side)) for im in images]).to(self.device)
        with torch.inference_mode():
            probs = torch.softmax(self.model(pixel_values=px.to(next(self.model.parameters()).dtype)).logits.float(), -1)
        return [{lab: float(p) for lab, p in zip(self.labels, row)} for row in probs.tolist()]
