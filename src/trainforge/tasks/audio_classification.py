"""Audio classification: a clip → one of N labels (an Audio Spectrogram Transformer; the built-in `spoken-digits`).

    processor  ASTFeatureExtractor at train.audio (audio/features.py): log-mel filterbanks, saved in model/
    encode     each record's audio (WAV/FLAC path, audio/waves.py) → mono at the sample rate; label → index
    batch      log-mels of the batch's clips (training with train.audio.noise > 0: noise drawn afresh per batch)
    loss       the model's cross-entropy × its share of the rank's examples
    validate   val_loss and val_accuracy; the best checkpoint has the highest val_accuracy
    evaluate   audio/evaluate.py: accuracy, macro-F1, confusion matrix, spectrograms of sample clips with
               predictions, beside a majority-class and an MFCC + logistic-regression baseline (McNemar's paired test)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from trainforge.audio.config import AudioConfig
from trainforge.errors import UserError
from trainforge.tasks.base import EvalJob, ModelSpec
from trainforge.tasks.info import ModelInfo


@dataclass
class AudioClassificationTask:
    labels: list[str] = field(default_factory=list)
    audio: AudioConfig = field(default_factory=AudioConfig)
    seed: int = 0
    processor: object | None = None

    name: ClassVar[str] = "audio_classification"
    peft_task_type: ClassVar[str | None] = None  # a plain PeftModel, the head in modules_to_save
    serves_as: ClassVar[str] = "classifier"
    token_level: ClassVar[bool] = False
    selection: ClassVar[tuple[str, bool]] = ("val_accuracy", True)
    compressible: ClassVar[bool] = False
    """compress is not wired for audio yet (its latency probe feeds text or images)."""
    input_kind: ClassVar[str] = "audio"

    @classmethod
    def for_training(cls, cfg, train_rows: list[dict], seed: int = 0) -> "AudioClassificationTask":
        missing = [r["id"] for r in train_rows[:1000] if "label" not in r]
        if missing:
            raise UserError(f"train.task=audio_classification needs labels; record {missing[0]} has none "
                            f"(set data.sources[].label_field)")
        labels = sorted({r["label"] for r in train_rows})
        if len(labels) < 2:
            raise UserError(f"train: audio classification needs at least two labels in data/train.jsonl, found {labels}")
        return cls(labels, cfg.audio, seed)

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.labels))

    def make_processor(self, cfg, target, train_rows):
        """A saved model brings its feature extractor; a preset gets one from train.audio."""
        from trainforge.audio.features import PREPROCESSOR_FILE, feature_extractor, load_feature_extractor
        from trainforge.models.presets import Preset

        if not isinstance(target, Preset) and (Path(target) / PREPROCESSOR_FILE).is_file():
            self.processor = load_feature_extractor(Path(target))
        else:
            self.processor = feature_extractor(self.audio.sample_rate, self.audio.num_mel_bins, self.audio.max_frames)
        return self.processor

    def prepare_tokenizer(self, tokenizer) -> None:
        self.processor = tokenizer

    def encode(self, rows: list[dict], tokenizer, held_out: bool = False):
        from trainforge.audio.examples import AudioExamples
        from trainforge.audio.features import log_mels
        from trainforge.audio.waves import load_waves

        label2id = {label: i for i, label in enumerate(self.labels)}
        labels = [label2id.get(r.get("label"), -100) for r in rows]
        if held_out and any(y < 0 for y in labels):
            raise UserError(f"train: {sum(y < 0 for y in labels)} validation records carry labels absent from training; "
                            f"use data.split.stratify=true")
        waves = load_waves(rows, tokenizer.sampling_rate, "data/val.jsonl" if held_out else "data/train.jsonl")
        per_batch = not held_out and self.audio.noise > 0
        enc = AudioExamples(waves, labels, self._positions, None if per_batch else log_mels(tokenizer, waves))
        self._encoded.append(enc)  # build_model, called after encode, tells it how many patches the model runs
        return enc

    _positions: int = 1
    _encoded: list = field(default_factory=list, repr=False)

    def batch(self, enc, idx: list[int], pad_id: int) -> dict:
        import numpy as np
        import torch

        from trainforge.audio.features import log_mels

        if enc.features is not None:
            feats = enc.features[idx]
        else:
            self._draws = getattr(self, "_draws", 0) + 1  # a new draw per batch, reproducible from the seed
            rng = np.random.default_rng([self.seed, self._draws])
            noisy = [w + rng.normal(0, self.audio.noise * (np.abs(w).max() or 1.0), w.shape).astype(np.float32)
                     for w in (enc.waves[i] for i in idx)]
            feats = log_mels(self.processor, noisy)
        return {"input_values": feats, "labels": torch.tensor([enc.labels[i] for i in idx])}

    def predicted_tokens(self, enc) -> list[int]:
        return [1] * len(enc)

    def loss(self, net, batch: dict, weights):
        return net(input_values=batch["input_values"], labels=batch["labels"]).loss * weights.examples

    def logits(self, model, enc, batch_size: int = 64):
        """(N, labels) logits on the CPU, in example order, for held-out examples."""
        import torch

        from trainforge.batching import model_device

        model.eval()
        device = model_device(model)
        out = []
        with torch.no_grad():
            for start in range(0, len(enc), batch_size):
                out.append(model(input_values=enc.features[start:start + batch_size].to(device)).logits.float().cpu())
        return torch.cat(out)

    def validate(self, model, val, pad_id: int, batch_size: int = 64) -> dict[str, float]:
        import torch

        logits = self.logits(model, val, batch_size)
        labels = torch.tensor(val.labels)
        return {"val_loss": float(torch.nn.functional.cross_entropy(logits, labels)),
                "val_accuracy": float((logits.argmax(-1) == labels).float().mean())}

    def build_model(self, spec: ModelSpec, tokenizer):
        from trainforge.audio.models import build_audio_classifier, check_audio_model, patch_positions

        model = build_audio_classifier(spec.model, self.labels, tokenizer.num_mel_bins, tokenizer.max_length,
                                       spec.dropout, spec.run_dir, **spec.overrides)
        check_audio_model(model, spec.model)
        self._positions = patch_positions(model)
        for enc in self._encoded:
            enc.positions = self._positions
        return model

    def load_model(self, model_dir: Path, **kwargs):
        from transformers import AutoModelForAudioClassification

        from trainforge.models.load import _load

        return _load(Path(model_dir), AutoModelForAudioClassification, kwargs)

    def load_processor(self, model_dir: Path):
        from trainforge.audio.features import load_feature_extractor

        return load_feature_extractor(model_dir)

    def model_info(self, spec: ModelSpec, model, method: str | None, adapter: bool) -> ModelInfo:
        from trainforge.tasks.info import architecture_of

        return ModelInfo(self.name, *architecture_of(model), processor="feature_extractor", labels=list(self.labels),
                         method=method, adapter=adapter)

    def samples(self, model, tokenizer, val_rows: list[dict]) -> list[dict]:
        return []

    def write_samples(self, samples: list[dict], model_dir: Path) -> dict:
        return {}

    def evaluate(self, job: EvalJob) -> dict[str, float]:
        from trainforge.audio.evaluate import evaluate_audio_classifier

        return evaluate_audio_classifier(self, job)

    @classmethod
    def from_info(cls, info: ModelInfo) -> "AudioClassificationTask":
        return cls(list(info.labels))
