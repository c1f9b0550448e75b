"""Building image models from presets (or loading a local directory) — the image side of models/presets.py.

A preset names a family (models/families.py) and config fields; the data decides the rest: the image
size (train.image.size), the labels (image classification), the vocabulary (CLIP). Two shapes need a
constraint transformers does not enforce:

    EfficientNet   hidden_dim must equal round_filters(config, 1280) (the top conv's width), and inputs
                   under 32 px shrink to nothing through five stride-2 stages
    CLIP           bos / eos / pad ids must lie inside the vocabulary; the text tower pools at eos
"""

from __future__ import annotations

from pathlib import Path

from trainforge.errors import UserError
from trainforge.models.families import family_named, family_of
from trainforge.models.presets import Preset, check_overrides, resolve_model


def _preset_for(spec: str, run_dir: Path | None, modality: str, key: str = "train.model"):
    target = resolve_model(spec, run_dir)
    if isinstance(target, Preset):
        family = family_named(target.family)
        if family.modality != modality:
            from trainforge.models.presets import PRESETS

            fitting = ", ".join(n for n, p in PRESETS.items() if family_named(p.family).modality == modality)
            raise UserError(f"{key}: '{spec}' is a {family.modality} preset; {modality} presets are {fitting}")
    return target


def build_image_classifier(spec: str, labels: list[str], image_size: int, dropout: float, run_dir: Path | None = None,
                           **overrides):
    """A fresh image classifier from a preset, or a saved image model directory with a new head for `labels`."""
    from transformers import AutoModelForImageClassification

    id2label = dict(enumerate(labels))
    head = dict(num_labels=len(labels), id2label=id2label, label2id={v: k for k, v in id2label.items()})
    target = _preset_for(spec, run_dir, "image")
    if not isinstance(target, Preset):
        return AutoModelForImageClassification.from_pretrained(target, ignore_mismatched_sizes=True, **head)
    family = family_named(target.family)
    check_overrides(overrides, family.config_cls(), "train.config_overrides")
    fields = {**family.preset_defaults, **target.config, **overrides, **head}
    fields.update({k: dropout for k in family.dropout_fields})
    if family.name == "efficientnet":
        if image_size < 32:
            raise UserError(f"train.image.size={image_size}: EfficientNet's five stride-2 stages need at least 32 px")
        from transformers.models.efficientnet.modeling_efficientnet import round_filters

        config = family.config_cls()(image_size=image_size, **fields)
        config.hidden_dim = round_filters(config, 1280)
    else:
        config = family.config_cls()(image_size=image_size, **fields)
    return family.classifier_cls()(config)


def build_clip(spec: str, vocab_size: int, special_ids: dict[str, int], image_size: int, max_length: int,
               run_dir: Path | None = None):
    """A CLIP / Chinese-CLIP model: a fresh preset (text tower sized to the tokenizer), or a saved one."""
    target = _preset_for(spec, run_dir, "image-text")
    if not isinstance(target, Preset):
        from transformers import AutoModel

        return AutoModel.from_pretrained(target)
    family = family_named(target.family)
    text = {**target.config["text"], "vocab_size": vocab_size, "max_position_embeddings": max(max_length, 16)}
    bad = {k: v for k, v in special_ids.items() if v is None or not 0 <= v < vocab_size}
    if bad:
        raise UserError(f"train.model={spec}: special token ids {bad} are outside the vocabulary of {vocab_size}")
    text.update(special_ids)
    vision = {**target.config["vision"], "image_size": image_size}
    config = family.config_cls()(text_config=text, vision_config=vision, projection_dim=target.config["projection_dim"])
    if family.name == "clip":
        from transformers import CLIPModel

        return CLIPModel(config)
    from transformers import ChineseCLIPModel

    return ChineseCLIPModel(config)


def check_image_model(model, spec: str) -> None:
    fam = family_of(model)
    if fam.registered and fam.modality != "image":
        raise UserError(f"train.model: '{spec}' is a {fam.modality} model ({fam.name}); task image_classification needs "
                        f"an image model (vit, mobilenet_v2, efficientnet)")
