"""Reading audio: a path or file:// URL → a mono float32 waveform at the model's sample rate, or the reason it
could not be read.

The data stage (data/io.py checked_audio) calls `check_audio` on every record's `audio` reference, so a missing or corrupt file is
quarantined there with its path and a snake_case reason, never found later as a crash mid-training:

    missing_audio   the path does not exist (or is not a readable file)
    corrupt_audio   soundfile (libsndfile) cannot decode it: truncated, not audio, unknown format
    empty_audio     it decodes to zero samples
    remote_audio    an http(s) URL: trainforge does not fetch audio over the network

Multi-channel audio is down-mixed to mono (the mean of the channels); another sample rate is resampled with
scipy.signal.resample_poly (polyphase, anti-aliased) by the reduced ratio target/source.
"""

from __future__ import annotations

from math import gcd
from pathlib import Path

import numpy as np

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")


class AudioError(ValueError):
    """An audio reference that cannot be read; `reason` is the snake_case counter name."""

    def __init__(self, reason: str, ref: str, detail: str = ""):
        self.reason, self.ref, self.detail = reason, ref, detail
        super().__init__(f"{ref}: {reason}{f' ({detail})' if detail else ''}")


def to_mono(wave: np.ndarray) -> np.ndarray:
    """(samples,) or (samples, channels) → (samples,) float32, channels averaged."""
    wave = np.asarray(wave, dtype=np.float32)
    return wave.mean(axis=1, dtype=np.float32) if wave.ndim == 2 else wave


def resample(wave: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """Polyphase resampling by the reduced ratio (16 kHz from 22.05 kHz: up 320, down 441)."""
    if source_rate == target_rate:
        return wave
    from scipy.signal import resample_poly

    g = gcd(int(source_rate), int(target_rate))
    return resample_poly(wave, target_rate // g, source_rate // g).astype(np.float32)


def _path(ref: str, base_dir: Path | None = None) -> Path:
    if ref.startswith(("http://", "https://")):
        raise AudioError("remote_audio", ref, "download it and point the record at the local file")
    path = Path(ref[len("file://"):] if ref.startswith("file://") else ref)
    if base_dir is not None and not path.is_absolute():
        path = base_dir / path
    if not path.is_file():
        raise AudioError("missing_audio", str(path))
    return path


def load_audio(ref: str, sample_rate: int, base_dir: Path | None = None) -> np.ndarray:
    """A mono float32 waveform at `sample_rate`; AudioError with the reason otherwise."""
    import soundfile as sf

    path = _path(ref, base_dir)
    try:
        wave, rate = sf.read(str(path), dtype="float32", always_2d=False)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        raise AudioError("corrupt_audio", str(path), str(e)[:200]) from None
    if wave.size == 0:
        raise AudioError("empty_audio", str(path))
    return resample(to_mono(wave), int(rate), sample_rate)


def check_audio(ref: str, base_dir: Path | None = None) -> str | None:
    """None when `ref` decodes, else the snake_case reason (the data stage's quarantine reason). Decoding reads the
    whole file: a truncated FLAC fails here, not at the first batch."""
    try:
        _decode(ref, base_dir)
    except AudioError as e:
        return e.reason
    return None


def _decode(ref: str, base_dir: Path | None = None) -> None:
    import soundfile as sf

    path = _path(ref, base_dir)
    try:
        wave, _ = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        raise AudioError("corrupt_audio", str(path), str(e)[:200]) from None
    if wave.size == 0:
        raise AudioError("empty_audio", str(path))


def load_waves(rows: list[dict], sample_rate: int, where: str = "records") -> list[np.ndarray]:
    """Each row's audio at `sample_rate`. The data stage quarantined unreadable files; one that broke since stops
    here with its id, path and reason."""
    from trainforge.errors import UserError

    out = []
    for r in rows:
        if not r.get("audio"):
            raise UserError(f"{where}: record {r.get('id')} has no audio; set data.sources[].audio_field")
        try:
            out.append(load_audio(r["audio"], sample_rate))
        except AudioError as e:
            raise UserError(f"{where}: record {r.get('id')}: {e}; re-run the data stage to quarantine it") from None
    return out
