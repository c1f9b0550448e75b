"""Image–text (CLIP / Chinese-CLIP): contrastive training on {image, text} pairs (the built-in `digits-captions`).

    processor  PairProcessor (vision/clip.py): a BPE on the captions (preset) or the directory's tokenizer,
               and CLIPImageProcessorPil at train.image.size
    encode     image → RGB → resized; caption → token ids; label (if any) → the pair's group
    batch      pixels (augmented in training) + padded token ids
    loss       the model's own symmetric InfoNCE (return_loss=True) × the micro-batch's share of examples
    validate   val_loss (the same loss over the whole val split at once) and image→text recall@1, which picks
               the best checkpoint
    evaluate   image→text and text→image recall@1/5/10 beside random ranking, and the CLIP score
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from trainforge.errors import UserError
from trainforge.tasks.base import EvalJob, ModelSpec
from trainforge.tasks.info import ModelInfo
from trainforge.vision.config import ImageConfig


@dataclass
class ClipTask:
    image: ImageConfig = field(default_factory=ImageConfig)
    max_length: int = 32
    seed: int = 0
    processor: object | None = None
    groups: list[str] = field(default_factory=list)
    """Label values in id order (pairs with the same label count as matches in recall@k)."""

    name: ClassVar[str] = "clip"
    peft_task_type: ClassVar[str | None] = None
    serves_as: ClassVar[str] = "embedder"
    token_level: ClassVar[bool] = False
    selection: ClassVar[tuple[str, bool]] = ("val_i2t_recall_at_1", True)
    compressible: ClassVar[bool] = False
    input_kind: ClassVar[str] = "image-text"

    @classmethod
    def for_training(cls, cfg, train_rows: list[dict], seed: int = 0) -> "ClipTask":
        bad = [r["id"] for r in train_rows[:1000] if not r.get("image") or not r.get("text")]
        if bad:
            raise UserError(f"train.task=clip needs an image and a caption per record; record {bad[0]} lacks one "
                            f"(set data.sources[].image_field and text_field)")
        groups = sorted({r["label"] for r in train_rows if r.get("label") is not None})
        return cls(cfg.image, cfg.max_length, seed, groups=groups)

    def make_processor(self, cfg, target, train_rows):
        from trainforge.tasks.text import text_tokenizer
        from trainforge.vision.clip import PairProcessor
        from trainforge.vision.processor import PREPROCESSOR_FILE, clip_processor, load_processor

        tokenizer = text_tokenizer(target, cfg.tokenizer.kind, cfg.tokenizer.vocab_size, cfg.tokenizer.min_frequency,
                                   cfg.max_length, (r["text"] for r in train_rows))
        from trainforge.models.presets import Preset

        if not isinstance(target, Preset) and (Path(target) / PREPROCESSOR_FILE).is_file():
            images = load_processor(Path(target))
        else:
            images = clip_processor(self.image.size)
        self.processor = PairProcessor(tokenizer, images)
        return self.processor

    def prepare_tokenizer(self, tokenizer) -> None:
        self.processor = tokenizer

    def encode(self, rows: list[dict], tokenizer, held_out: bool = False):
        from trainforge.vision.examples import PixelExamples
        from trainforge.vision.images import load_rgb
        from trainforge.vision.processor import pixel_values, processor_size

        images = load_rgb(rows, processor_size(tokenizer.image_processor), "data/val.jsonl" if held_out else "data/train.jsonl")
        ids = tokenizer.tokenizer([r["text"] for r in rows], truncation=True, max_length=self.max_length)["input_ids"]
        index = {g: i for i, g in enumerate(self.groups)}
        labels = [index.get(r.get("label"), -1) for r in rows]
        pixels = pixel_values(tokenizer.image_processor, images) if held_out else None
        return PixelExamples(images, labels, max(len(x) for x in ids), pixels, extra={"input_ids": ids})

    def batch(self, enc, idx: list[int], pad_id: int) -> dict:
        import torch

        from trainforge.vision.augment import augment
        from trainforge.vision.examples import seeded_rng
        from trainforge.vision.processor import pixel_values

        if enc.pixels is not None:
            pixels = enc.pixels[idx]
        else:
            self._draws = getattr(self, "_draws", 0) + 1
            rng = seeded_rng(self.seed, self._draws)
            pixels = pixel_values(self.processor.image_processor, [augment(enc.images[i], self.image.augment, rng) for i in idx])
        seqs = [enc.extra["input_ids"][i] for i in idx]
        longest = max(map(len, seqs))
        ids = torch.full((len(idx), longest), pad_id, dtype=torch.long)  # B, T
        mask = torch.zeros((len(idx), longest), dtype=torch.long)
        for row, seq in enumerate(seqs):
            ids[row, : len(seq)] = torch.tensor(seq)
            mask[row, : len(seq)] = 1
        return {"pixel_values": pixels, "input_ids": ids, "attention_mask": mask}

    def predicted_tokens(self, enc) -> list[int]:
        return [1] * len(enc)

    def loss(self, net, batch: dict, weights):
        return net(**batch, return_loss=True).loss * weights.examples

    def embeddings(self, model, enc, batch_size: int = 64):
        """(image, text) projected embeddings for held-out examples, numpy on the CPU."""
        import numpy as np
        import torch

        from trainforge.batching import model_device
        from trainforge.vision.clip import features

        model.eval()
        device = model_device(model)
        img, txt = [], []
        with torch.no_grad():
            for s in range(0, len(enc), batch_size):
                b = self.batch(enc, list(range(s, min(len(enc), s + batch_size))), self.processor.pad_token_id)
                img.append(features(model.get_image_features(pixel_values=b["pixel_values"].to(device))).float().cpu())
                txt.append(features(model.get_text_features(input_ids=b["input_ids"].to(device),
                                                            attention_mask=b["attention_mask"].to(device))).float().cpu())
        return np.concatenate([t.numpy() for t in img]), np.concatenate([t.numpy() for t in txt])

    def validate(self, model, val, pad_id: int, batch_size: int = 64) -> dict[str, float]:
        import torch

        from trainforge.vision.retrieval import normalise, recall_at_k, unique_captions

        base = model.get_base_model() if hasattr(model, "get_base_model") else getattr(model, "model", model)
        img, txt = self.embeddings(model, val, batch_size)
        img, txt = normalise(img), normalise(txt)
        logits = torch.from_numpy(img @ txt.T) * float(base.logit_scale.detach().exp())
        target = torch.arange(len(val))
        loss = (torch.nn.functional.cross_entropy(logits, target) + torch.nn.functional.cross_entropy(logits.T, target)) / 2
        groups = None if min(val.labels) < 0 else val.labels
        cols, pos = unique_captions([str(x) for x in val.extra["input_ids"]], groups)  # distinct captions, as eval ranks them
        r = recall_at_k((img @ txt.T)[:, cols], pos, (1,))
        return {"val_loss": float(loss), "val_i2t_recall_at_1": r[1]}

    def build_model(self, spec: ModelSpec, tokenizer):
        from trainforge.models.tokenizer import special_ids
        from trainforge.vision.models import build_clip

        return build_clip(spec.model, len(tokenizer.tokenizer), special_ids(tokenizer.tokenizer), self.image.size,
                          self.max_length, spec.run_dir)

    def load_model(self, model_dir: Path, **kwargs):
        from trainforge.vision.clip import load_clip

        return load_clip(model_dir, **kwargs)

    def model_info(self, spec: ModelSpec, model, method: str | None, adapter: bool) -> ModelInfo:
        from trainforge.tasks.info import architecture_of

        return ModelInfo(self.name, *architecture_of(model), processor="tokenizer+image_processor", labels=list(self.groups),
                         max_length=self.max_length, method=method, adapter=adapter)

    def samples(self, model, tokenizer, val_rows: list[dict]) -> list[dict]:
        return []

    def write_samples(self, samples: list[dict], model_dir: Path) -> dict:
        return {}

    def evaluate(self, job: EvalJob) -> dict[str, float]:
        from trainforge.vision.clip_eval import evaluate_clip

        return evaluate_clip(self, job)

    @classmethod
    def from_info(cls, info: ModelInfo) -> "ClipTask":
        return cls(max_length=info.max_length or 32, groups=list(info.labels))
