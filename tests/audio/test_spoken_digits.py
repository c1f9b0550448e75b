"""The built-in spoken-digits: espeak-ng speech, seeded, cached, labelled synthetic; a clear error without it."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from trainforge.audio import spoken_digits
from trainforge.errors import UserError

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="espeak-ng is not installed (apt-get install espeak-ng; make install does as root)")


@needs_espeak
def test_spoken_digits_generates_labelled_synthetic_clips_once(tmp_path):
    import soundfile as sf

    rows = list(spoken_digits.spoken_digit_records(per_digit=1, folder=tmp_path))
    assert sorted(r["label"] for r in rows) == [str(d) for d in range(10)]
    assert all(r["meta"]["synthetic"] is True and r["meta"]["generator"] == "espeak-ng" for r in rows)
    info = sf.info(rows[0]["audio"])
    assert info.samplerate == 16000 and info.channels == 1 and 0.2 < info.duration < 2.0
    wave, _ = sf.read(rows[0]["audio"])
    assert np.abs(wave).max() > 0.3  # speech, not silence
    mtimes = [tmp_path.joinpath(p).stat().st_mtime_ns for p in sorted(x.name for x in tmp_path.iterdir())]
    again = list(spoken_digits.spoken_digit_records(per_digit=1, folder=tmp_path))  # read from the cache
    assert again == rows
    assert mtimes == [tmp_path.joinpath(p).stat().st_mtime_ns for p in sorted(x.name for x in tmp_path.iterdir())]


def test_the_plan_is_seeded_and_varied():
    plan = spoken_digits.takes(per_digit=20)
    assert plan == spoken_digits.takes(per_digit=20)
    assert len({t["voice"] for t in plan}) > 10 and len({t["speed"] for t in plan}) > 20
    assert all(spoken_digits.SNR_DB[0] <= t["snr_db"] <= spoken_digits.SNR_DB[1] for t in plan)


def test_without_espeak_the_builtin_says_to_install_it(monkeypatch):
    monkeypatch.setattr(spoken_digits.shutil, "which", lambda name: None)
    with pytest.raises(UserError, match="apt-get install espeak-ng"):
        next(spoken_digits.spoken_digit_records(per_digit=1))


def test_the_example_config_is_valid_and_says_what_it_runs():
    from pathlib import Path

    from trainforge.config import load_config

    cfg = load_config(Path(__file__).resolve().parents[2] / "examples" / "audio.yaml")
    assert cfg.data.sources[0].builtin == "spoken-digits" and cfg.train.task == "audio_classification"
    assert cfg.train.model == "ast-tiny" and cfg.eval.baseline == "mfcc-lr" and cfg.compress is None
