"""train.audio: how audio becomes log-mel features (task audio_classification)."""

from __future__ import annotations

from pydantic import Field

from trainforge.section import Section


class AudioConfig(Section):
    """Every clip is read mono at sample_rate, turned into num_mel_bins log-mel filterbanks every 10 ms (25 ms
    windows; transformers' ASTFeatureExtractor on numpy), and padded or cut to max_frames frames."""

    sample_rate: int = Field(16000, ge=4000)
    """Clips at another rate are resampled (scipy.signal.resample_poly)."""
    num_mel_bins: int = Field(64, ge=16)
    """Mel filterbanks per frame; AST's patches are 16 × 16, so at least 16."""
    max_frames: int = Field(100, ge=16)
    """Frames per clip (100 = 1 s); longer clips are cut, shorter are zero-padded."""
    noise: float = Field(0.0, ge=0, le=1)
    """Training-time augmentation: Gaussian noise added to each training waveform, standard deviation as a share of
    its peak; drawn afresh each time an example is batched. 0 is off."""
