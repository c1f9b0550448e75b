"""Tiny constructed audio: tones whose pitch is the label, written as real WAV files (no espeak-ng needed)."""

from __future__ import annotations

import numpy as np
import pytest

RATE = 16000


def tone(freq: float, seconds: float = 0.4, rate: int = RATE, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(seed)
    return (0.5 * np.sin(2 * np.pi * freq * t) + 0.05 * rng.normal(size=t.shape)).astype(np.float32)


@pytest.fixture(scope="session")
def tone_rows(tmp_path_factory) -> list[dict]:
    """24 clips, 3 labels (300 / 1200 / 3000 Hz), each a WAV file on disk."""
    import soundfile as sf

    folder = tmp_path_factory.mktemp("tones")
    rows = []
    for i in range(24):
        label = i % 3
        path = folder / f"{i}.wav"
        sf.write(str(path), tone((300, 1200, 3000)[label], seed=i), RATE)
        rows.append({"id": f"tone:{i}", "audio": str(path), "label": str(label)})
    return rows
