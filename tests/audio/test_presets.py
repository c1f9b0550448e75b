"""The AST family and preset: built from config at the log-mel shape, its declared paths exist, wrong tasks refuse."""

from __future__ import annotations

import pytest
import torch

from trainforge.audio.models import build_audio_classifier, patch_positions
from trainforge.errors import UserError
from trainforge.models.families import family_of
from trainforge.models.presets import PRESETS, build_classifier
from trainforge.train.methods import layer_groups, lora_targets, transformer_blocks


def test_ast_preset_builds_at_the_feature_shape_and_its_family_paths_exist(tmp_path):
    model = build_audio_classifier("ast-tiny", ["a", "b", "c"], 64, 100, 0.1).eval()
    fam = family_of(model)
    assert fam.name == PRESETS["ast-tiny"].family == "ast" and fam.modality == "audio"
    assert type(model) is fam.classifier_cls() and model.config.num_labels == 3
    assert len(transformer_blocks(model)) == model.config.num_hidden_layers == 2
    groups = dict(layer_groups(model))
    assert groups["embeddings"] and groups["head"]
    names = [n.rsplit(".", 1)[-1] for n, _ in model.named_modules()]  # q/v projections (query/value before transformers 5)
    assert {"q_proj", "v_proj"} <= set(names) and {"q_proj", "v_proj"} <= set(lora_targets(model))
    assert model(input_values=torch.zeros(2, 100, 64)).logits.shape == (2, 3)
    assert patch_positions(model) == 5 * 9 + 2
    assert sum(p.numel() for p in model.parameters()) < 1e6
    model.save_pretrained(tmp_path)
    again = build_audio_classifier(str(tmp_path), ["x", "y"], 64, 100, 0.0)  # a saved model with a new head
    assert again.config.num_labels == 2 and family_of(again) is fam


def test_audio_presets_refuse_the_wrong_task_and_too_small_features():
    with pytest.raises(UserError, match="audio_classification"):
        build_classifier("ast-tiny", 50, 2, 64, 0.1, {0: "a", 1: "b"}, 0)
    with pytest.raises(UserError, match="audio presets are"):
        build_audio_classifier("vit-tiny", ["a", "b"], 64, 100, 0.0)
    with pytest.raises(UserError, match="AST patch"):
        build_audio_classifier("ast-tiny", ["a", "b"], 8, 100, 0.0)
