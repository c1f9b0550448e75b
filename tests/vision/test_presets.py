"""Every image and image–text preset builds from its config with the data's size and labels, and resolves to its
family; EfficientNet's head width follows round_filters (the B7-sized default would otherwise be built)."""

from __future__ import annotations

import pytest

from trainforge.errors import UserError
from trainforge.models.families import family_named, family_of
from trainforge.models.presets import PRESETS, build_classifier
from trainforge.train.methods import lora_targets, transformer_blocks
from trainforge.vision.models import build_clip, build_image_classifier

IMAGE = [p for p in PRESETS if family_named(PRESETS[p].family).modality == "image"]
PAIRS = [p for p in PRESETS if family_named(PRESETS[p].family).modality == "image-text"]


@pytest.mark.parametrize("preset", IMAGE)
def test_image_presets_build(preset):
    import torch

    model = build_image_classifier(preset, ["a", "b", "c"], 32, 0.1).eval()  # batch norm cannot train on one image
    fam = family_of(model)
    assert fam.name == PRESETS[preset].family and type(model) is fam.classifier_cls()
    assert model.config.num_labels == 3 and len(transformer_blocks(model)) > 0 and lora_targets(model)
    assert model(pixel_values=torch.zeros(1, 3, 32, 32)).logits.shape == (1, 3)
    if fam.name == "efficientnet":
        from transformers.models.efficientnet.modeling_efficientnet import round_filters

        assert model.config.hidden_dim == round_filters(model.config, 1280)
        assert sum(p.numel() for p in model.parameters()) < 6e6  # B0-sized, not the 63.8M B7 default


@pytest.mark.parametrize("preset", PAIRS)
def test_clip_presets_build_with_specials_inside_the_vocabulary(preset):
    model = build_clip(preset, 300, {"pad_token_id": 0, "bos_token_id": 2, "eos_token_id": 3}, 16, 16)
    assert family_of(model).name == PRESETS[preset].family and model.config.text_config.vocab_size == 300
    with pytest.raises(UserError, match="outside the vocabulary"):
        build_clip(preset, 300, {"pad_token_id": 0, "eos_token_id": 300}, 16, 16)


def test_presets_refuse_the_wrong_task():
    with pytest.raises(UserError, match="image_classification"):
        build_classifier("vit-tiny", 50, 2, 64, 0.1, {0: "a", 1: "b"}, 0)
    with pytest.raises(UserError, match="image presets are"):
        build_image_classifier("encoder-tiny", ["a", "b"], 32, 0.0)
    with pytest.raises(UserError, match="at least 32 px"):
        build_image_classifier("efficientnet-tiny", ["a", "b"], 16, 0.0)
