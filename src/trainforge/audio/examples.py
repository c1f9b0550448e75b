"""Examples for the training loop when the input is a clip: the loop reads len(enc), enc.input_ids[i] (bucketing and
the memory estimate use each example's length) and enc.token_labels — every clip has the same length, the number
of patches AST runs, as vision/examples.py's PixelExamples does for images."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class AudioExamples:
    waves: list
    """Mono waveforms at the feature extractor's rate (training: augmented per batch)."""
    labels: list[int]
    positions: int = 1
    features: object | None = None
    """(N, frames, mel bins) log-mels (held-out examples, computed once); None: computed per batch (training)."""
    token_labels: None = None

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def input_ids(self) -> list[range]:
        return [range(self.positions)] * len(self.labels)
