"""The text processor every text task shares: a BPE trained on the run's text for a fresh preset,
or the tokenizer a model directory brings."""

from __future__ import annotations

from collections.abc import Iterable

from trainforge.errors import UserError


def text_tokenizer(target, kind: str, vocab_size: int, min_frequency: int, max_length: int, texts: Iterable[str],
                   key: str = "train"):
    """`target`: what models.presets.resolve_model returned (a Preset, a directory or a hub id).
    kind: bpe (train one on `texts`; presets only) or pretrained (the directory's own)."""
    from trainforge.models.presets import Preset
    from trainforge.models.tokenizer import load_tokenizer, train_bpe

    if isinstance(target, Preset):
        if kind == "pretrained":
            raise UserError(f"{key}.tokenizer.kind=pretrained needs {key}.model to be a model directory, not a preset")
        return train_bpe(texts, vocab_size, min_frequency, max_length, family=target.family)
    return load_tokenizer(target, max_length)
