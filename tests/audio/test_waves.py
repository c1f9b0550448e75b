"""Reading audio: mono down-mix, resampling, FLAC, and a broken file quarantined with its path and reason."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.audio.conftest import tone
from trainforge.audio.waves import AudioError, check_audio, load_audio, load_waves, resample, to_mono
from trainforge.data.config import SourceConfig
from trainforge.data.io import Quarantined, Record, read_source
from trainforge.errors import UserError


def _peak_hz(wave: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(wave))
    return float(np.fft.rfftfreq(len(wave), 1 / rate)[spectrum.argmax()])


def test_stereo_is_down_mixed_and_resampled_keeping_its_pitch(tmp_path):
    import soundfile as sf

    left = tone(440, 0.5, 22050)
    stereo = np.stack([left, 0.5 * left], axis=1)
    sf.write(str(tmp_path / "s.wav"), stereo, 22050, subtype="FLOAT")
    wave = load_audio(str(tmp_path / "s.wav"), 16000)
    assert wave.ndim == 1 and wave.dtype == np.float32
    assert len(wave) == round(len(left) * 16000 / 22050)
    assert abs(_peak_hz(wave, 16000) - 440) < 3  # the tone survives 22.05 → 16 kHz
    np.testing.assert_allclose(to_mono(stereo), 0.75 * left, atol=1e-6)
    np.testing.assert_allclose(np.sqrt(np.mean(wave ** 2)), np.sqrt(np.mean((0.75 * left) ** 2)), rtol=0.02)


def test_resample_is_identity_at_the_same_rate_and_scipy_otherwise():
    from scipy.signal import resample_poly

    w = tone(1000, 0.1, 48000)
    assert resample(w, 48000, 48000) is w
    np.testing.assert_allclose(resample(w, 48000, 16000), resample_poly(w, 1, 3), atol=1e-6)


def test_flac_reads_like_wav(tmp_path):
    import soundfile as sf

    w = tone(700)
    sf.write(str(tmp_path / "a.flac"), w, 16000)
    np.testing.assert_allclose(load_audio(str(tmp_path / "a.flac"), 16000), w, atol=1e-4)  # FLAC is 16-bit here


def test_corrupt_and_missing_audio_are_quarantined_with_path_and_reason(tmp_path, tone_rows):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 7)  # a truncated header
    src = tmp_path / "clips.jsonl"
    rows = [{"audio": tone_rows[0]["audio"], "label": "0"}, {"audio": "bad.wav", "label": "1"},
            {"audio": "gone.wav", "label": "2"}]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    items = list(read_source(SourceConfig(path=str(src), audio_field="audio"), check_images=True))
    assert isinstance(items[0], Record) and items[0].audio == tone_rows[0]["audio"]
    quarantined = [i for i in items if isinstance(i, Quarantined)]
    assert [(q.line, q.reason) for q in quarantined] == [(2, "corrupt_audio"), (3, "missing_audio")]
    assert all(q.source == str(src) for q in quarantined)
    assert str(bad) in quarantined[0].raw and str(tmp_path / "gone.wav") in quarantined[1].raw
    assert check_audio(str(bad)) == "corrupt_audio"
    with pytest.raises(AudioError, match="corrupt_audio"):
        load_audio(str(bad), 16000)
    with pytest.raises(UserError, match="re-run the data stage"):  # broken after the data stage: a clear stop
        load_waves([{"id": "x", "audio": str(bad)}], 16000)
