"""Image classification: an image → one of N labels (ViT, MobileNetV2, EfficientNet; the built-in `digits`).

    processor  ViTImageProcessorPil at train.image.size (vision/processor.py), saved in model/
    encode     each record's image (path or data URL, vision/images.py) → RGB → resized; label → index
    batch      training: augmented afresh (vision/augment.py) then processed; held out: processed once
    loss       the model's cross-entropy × its share of the rank's examples
    validate   val_loss and val_accuracy; the best checkpoint has the highest val_accuracy
    evaluate   vision/evaluate.py: accuracy, macro-F1, confusion matrix with images per cell, attention
               rollout over patches (ViT), beside logistic regression on pixels with McNemar's paired test
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from trainforge.errors import UserError
from trainforge.tasks.base import EvalJob, ModelSpec
from trainforge.tasks.info import ModelInfo
from trainforge.vision.config import ImageConfig
from trainforge.vision.images import load_rgb


@dataclass
class ImageClassificationTask:
    labels: list[str] = field(default_factory=list)
    image: ImageConfig = field(default_factory=ImageConfig)
    seed: int = 0
    processor: object | None = None

    name: ClassVar[str] = "image_classification"
    peft_task_type: ClassVar[str | None] = None  # peft has no image task type: a plain PeftModel, heads in modules_to_save
    serves_as: ClassVar[str] = "classifier"
    token_level: ClassVar[bool] = False
    selection: ClassVar[tuple[str, bool]] = ("val_accuracy", True)
    compressible: ClassVar[bool] = True
    input_kind: ClassVar[str] = "image"
    """What the server feeds it (serve/engine.py): images, not text."""

    @classmethod
    def for_training(cls, cfg, train_rows: list[dict], seed: int = 0) -> "ImageClassificationTask":
        missing = [r["id"] for r in train_rows[:1000] if "label" not in r]
        if missing:
            raise UserError(f"train.task=image_classification needs labels; record {missing[0]} has none "
                            f"(set data.sources[].label_field)")
        labels = sorted({r["label"] for r in train_rows})
        if len(labels) < 2:
            raise UserError(f"train: image classification needs at least two labels in data/train.jsonl, found {labels}")
        return cls(labels, cfg.image, seed)

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.labels))

    def make_processor(self, cfg, target, train_rows):
        """A saved model brings its processor; a preset gets one at train.image.size."""
        from trainforge.models.presets import Preset
        from trainforge.vision.processor import PREPROCESSOR_FILE, classification_processor, load_processor

        if not isinstance(target, Preset) and (Path(target) / PREPROCESSOR_FILE).is_file():
            self.processor = load_processor(Path(target))
            self.processor.size = {"height": self.image.size, "width": self.image.size}
        else:
            self.processor = classification_processor(self.image.size)
        return self.processor

    def prepare_tokenizer(self, tokenizer) -> None:
        self.processor = tokenizer

    def encode(self, rows: list[dict], tokenizer, held_out: bool = False):
        from trainforge.vision.examples import PixelExamples
        from trainforge.vision.processor import pixel_values, processor_size

        label2id = {label: i for i, label in enumerate(self.labels)}
        labels = [label2id.get(r.get("label"), -100) for r in rows]
        unseen = sum(1 for y in labels if y < 0)
        if held_out and unseen:
            raise UserError(f"train: {unseen} validation records carry labels absent from training; use data.split.stratify=true")
        images = load_rgb(rows, processor_size(tokenizer), "data/val.jsonl" if held_out else "data/train.jsonl")
        pixels = pixel_values(tokenizer, images) if held_out else None
        enc = PixelExamples(images, labels, self._positions, pixels)
        self._encoded.append(enc)  # build_model, called after encode, tells it how many patches the model runs
        return enc

    _positions: int = 1
    _encoded: list = field(default_factory=list, repr=False)

    def batch(self, enc, idx: list[int], pad_id: int) -> dict:
        import torch

        from trainforge.vision.augment import augment
        from trainforge.vision.examples import seeded_rng
        from trainforge.vision.processor import pixel_values

        if enc.pixels is not None:
            pixels = enc.pixels[idx]
        else:
            self._draws = getattr(self, "_draws", 0) + 1  # a new draw per batch, reproducible from the seed
            rng = seeded_rng(self.seed, self._draws)
            pixels = pixel_values(self.processor, [augment(enc.images[i], self.image.augment, rng) for i in idx])
        return {"pixel_values": pixels, "labels": torch.tensor([enc.labels[i] for i in idx])}

    def predicted_tokens(self, enc) -> list[int]:
        return [1] * len(enc)

    def loss(self, net, batch: dict, weights):
        return net(pixel_values=batch["pixel_values"], labels=batch["labels"]).loss * weights.examples

    def logits(self, model, enc, batch_size: int = 64):
        """(N, labels) logits on the CPU, in example order, for held-out examples."""
        import torch

        from trainforge.batching import model_device

        model.eval()
        device = model_device(model) if any(True for _ in model.parameters()) else torch.device("cpu")
        out = []
        with torch.no_grad():
            for start in range(0, len(enc), batch_size):
                px = enc.pixels[start:start + batch_size].to(device)
                out.append(model(pixel_values=px).logits.float().cpu())
        return torch.cat(out)

    def validate(self, model, val, pad_id: int, batch_size: int = 64) -> dict[str, float]:
        import torch

        logits = self.logits(model, val, batch_size)
        labels = torch.tensor(val.labels)
        return {"val_loss": float(torch.nn.functional.cross_entropy(logits, labels)),
                "val_accuracy": float((logits.argmax(-1) == labels).float().mean())}

    def build_model(self, spec: ModelSpec, tokenizer):
        from trainforge.vision.examples import patch_positions
        from trainforge.vision.models import build_image_classifier, check_image_model

        model = build_image_classifier(spec.model, self.labels, self.image.size, spec.dropout, spec.run_dir, **spec.overrides)
        check_image_model(model, spec.model)
        self._positions = patch_positions(model)
        for enc in self._encoded:
            enc.positions = self._positions
        return model

    def load_model(self, model_dir: Path, **kwargs):
        from transformers import AutoModelForImageClassification

        from trainforge.models.load import _load

        return _load(Path(model_dir), AutoModelForImageClassification, kwargs)

    def load_processor(self, model_dir: Path):
        from trainforge.vision.processor import load_processor

        return load_processor(model_dir)

    def model_info(self, spec: ModelSpec, model, method: str | None, adapter: bool) -> ModelInfo:
        from trainforge.tasks.info import architecture_of

        return ModelInfo(self.name, *architecture_of(model), processor="image_processor", labels=list(self.labels),
                         method=method, adapter=adapter)

    def samples(self, model, tokenizer, val_rows: list[dict]) -> list[dict]:
        return []

    def write_samples(self, samples: list[dict], model_dir: Path) -> dict:
        return {}

    def evaluate(self, job: EvalJob) -> dict[str, float]:
        from trainforge.vision.evaluate import evaluate_image_classifier

        return evaluate_image_classifier(self, job)

    def compress(self, ctx) -> dict:
        """The compress stage for an image classifier (vision/compress.py)."""
        from trainforge.vision.compress import compress_image_classifier

        return compress_image_classifier(self, ctx)

    @classmethod
    def from_info(cls, info: ModelInfo) -> "ImageClassificationTask":
        return cls(list(info.labels))
