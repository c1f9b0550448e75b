"""Log-mel features through transformers' ASTFeatureExtractor (its numpy path: no torchaudio), saved beside the
model as preprocessor_config.json so eval reads the same features the model trained on."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trainforge.errors import UserError

PREPROCESSOR_FILE = "preprocessor_config.json"


def feature_extractor(sample_rate: int, num_mel_bins: int, max_frames: int):
    from transformers import ASTFeatureExtractor

    return ASTFeatureExtractor(sampling_rate=sample_rate, num_mel_bins=num_mel_bins, max_length=max_frames)


def load_feature_extractor(model_dir: Path):
    from transformers import ASTFeatureExtractor

    if not (Path(model_dir) / PREPROCESSOR_FILE).is_file():
        raise UserError(f"{model_dir}: no {PREPROCESSOR_FILE}; an audio model directory needs its feature extractor "
                        f"(re-run the train stage)")
    return ASTFeatureExtractor.from_pretrained(model_dir)


def log_mels(extractor, waves: list[np.ndarray], batch: int = 256):
    """(N, max_frames, num_mel_bins) float tensor of normalised log-mel filterbanks."""
    import torch

    parts = [extractor(waves[s:s + batch], sampling_rate=extractor.sampling_rate, return_tensors="pt")["input_values"]
             for s in range(0, len(waves), batch)]
    return torch.cat(parts) if parts else torch.zeros(0, extractor.max_length, extractor.num_mel_bins)


def mfcc(features: np.ndarray, n: int = 20) -> np.ndarray:
    """MFCCs from log-mel frames: the type-II orthonormal DCT over the mel axis (scipy.fft.dct), first n kept.
    (N, T, M) → (N, T, n)."""
    from scipy.fft import dct

    return dct(np.asarray(features, dtype=np.float64), type=2, axis=-1, norm="ortho")[..., :n]


def mfcc_summary(features: np.ndarray, n: int = 20) -> np.ndarray:
    """A fixed-length vector per clip for the MFCC + LR baseline: the mean and standard deviation of each
    coefficient over time, and the mean over each third of the clip (a coarse order in time). (N, T, M) → (N, 5n)."""
    c = mfcc(features, n)
    thirds = [part.mean(1) for part in np.array_split(c, 3, axis=1)]
    return np.concatenate([c.mean(1), c.std(1), *thirds], axis=1)
