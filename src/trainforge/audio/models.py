"""Building the audio classifier: an Audio Spectrogram Transformer (ASTForAudioClassification) from a preset
sized to the features (train.audio.num_mel_bins × max_frames), or a saved audio model directory with a new head."""

from __future__ import annotations

from pathlib import Path

from trainforge.errors import UserError
from trainforge.models.families import family_named, family_of
from trainforge.models.presets import Preset, check_overrides


def build_audio_classifier(spec: str, labels: list[str], num_mel_bins: int, max_frames: int, dropout: float,
                           run_dir: Path | None = None, **overrides):
    from transformers import AutoModelForAudioClassification

    from trainforge.vision.models import _preset_for

    id2label = dict(enumerate(labels))
    head = dict(num_labels=len(labels), id2label=id2label, label2id={v: k for k, v in id2label.items()})
    target = _preset_for(spec, run_dir, "audio")
    if not isinstance(target, Preset):
        return AutoModelForAudioClassification.from_pretrained(target, ignore_mismatched_sizes=True, **head)
    family = family_named(target.family)
    check_overrides(overrides, family.config_cls(), "train.config_overrides")
    fields = {**family.preset_defaults, **target.config, **overrides, **head}
    fields.update({k: dropout for k in family.dropout_fields})
    patch = fields.get("patch_size", 16)
    if num_mel_bins < patch or max_frames < patch:
        raise UserError(f"train.audio: num_mel_bins={num_mel_bins} × max_frames={max_frames} is smaller than one "
                        f"{patch} × {patch} AST patch; raise them")
    config = family.config_cls()(num_mel_bins=num_mel_bins, max_length=max_frames, **fields)
    return family.classifier_cls()(config)


def check_audio_model(model, spec: str) -> None:
    fam = family_of(model)
    if fam.registered and fam.modality != "audio":
        raise UserError(f"train.model: '{spec}' is a {fam.modality} model ({fam.name}); task audio_classification needs "
                        f"an audio model (ast)")


def patch_positions(model) -> int:
    """Positions AST runs per clip: frequency × time patches + [CLS] + distillation token."""
    cfg = model.config
    f = (cfg.num_mel_bins - cfg.patch_size) // cfg.frequency_stride + 1
    t = (cfg.max_length - cfg.patch_size) // cfg.time_stride + 1
    return f * t + 2
