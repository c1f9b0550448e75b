"""Built-in `spoken-digits`: the words "zero".."nine" synthesised offline with Debian's espeak-ng — several
voices, speeds and pitches, with seeded background noise — a small speech-classification set that needs no
download. Synthetic speech: every record says so in its meta (`synthetic: true`, the voice, speed, pitch,
SNR), kept in every split file, so it is never passed off as recorded speech.

    {audio: <cache>/spoken-digits-v1/<digit>_<n>.wav, label: "0".."9", meta: {synthetic, voice, speed, pitch, snr_db}}

Generated on first use into $TRAINFORGE_CACHE (default ~/.cache/trainforge)/spoken-digits-v1/ as 16 kHz mono
16-bit WAV; a later use reads the cache (a file missing from it is regenerated). The takes are drawn from one
seeded generator, so every machine with the same espeak-ng makes the same set. Install espeak-ng with
`apt-get install espeak-ng` (make install does where it runs as root).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np

from trainforge.errors import UserError

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
VOICES = ["en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-029"]
VARIANTS = ["", "+m1", "+m3", "+m5", "+f1", "+f2", "+f4", "+klatt"]
SPEEDS = (110, 210)
"""Words per minute (espeak-ng -s), drawn uniformly."""
PITCHES = (25, 75)
"""espeak-ng -p (0..99, 50 is the voice's own), drawn uniformly."""
SNR_DB = (10.0, 30.0)
"""Signal-to-noise ratio of the added white noise, drawn uniformly."""
SAMPLE_RATE = 16000
TAKES_PER_DIGIT = 50
VERSION = "spoken-digits-v1"


def espeak() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise UserError("data.sources: builtin spoken-digits synthesises speech with espeak-ng, which is not installed; "
                        "install it (`sudo apt-get install espeak-ng`, or `make install` as root) and re-run")
    return exe


def cache_dir() -> Path:
    return Path(os.environ.get("TRAINFORGE_CACHE", Path.home() / ".cache" / "trainforge")) / VERSION


def takes(per_digit: int = TAKES_PER_DIGIT, seed: int = 0) -> list[dict]:
    """The seeded plan: digit, voice, speed, pitch, SNR and noise seed of each take."""
    rng = np.random.default_rng(seed)
    plan = []
    for n in range(per_digit):
        for digit in range(10):
            plan.append({"digit": digit, "n": n,
                         "voice": VOICES[rng.integers(len(VOICES))] + VARIANTS[rng.integers(len(VARIANTS))],
                         "speed": int(rng.integers(*SPEEDS)), "pitch": int(rng.integers(*PITCHES)),
                         "snr_db": round(float(rng.uniform(*SNR_DB)), 1), "noise_seed": int(rng.integers(2 ** 31))})
    return plan


def synthesise(take: dict, path: Path, exe: str) -> None:
    """One take: espeak-ng → WAV (22.05 kHz) → mono 16 kHz, peak-normalised, noise at the take's SNR."""
    import soundfile as sf

    from trainforge.audio.waves import resample, to_mono

    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.wav"
        subprocess.run([exe, "-w", str(raw), "-v", take["voice"], "-s", str(take["speed"]), "-p", str(take["pitch"]),
                        WORDS[take["digit"]]], check=True, capture_output=True, timeout=60)
        wave, rate = sf.read(str(raw), dtype="float32")
    wave = resample(to_mono(wave), rate, SAMPLE_RATE)
    wave = wave / (np.abs(wave).max() or 1.0) * 0.7
    rng = np.random.default_rng(take["noise_seed"])
    power = float(np.mean(wave ** 2)) or 1e-8
    wave = wave + rng.normal(0.0, np.sqrt(power / 10 ** (take["snr_db"] / 10)), wave.shape).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_suffix(".part.wav")
    sf.write(str(part), np.clip(wave, -1, 1), SAMPLE_RATE, subtype="PCM_16")
    part.replace(path)  # atomic: an interrupted generation leaves no half file in the cache


def spoken_digit_records(per_digit: int = TAKES_PER_DIGIT, folder: Path | None = None) -> Iterator[dict]:
    exe = espeak()
    folder = folder or cache_dir()
    for i, take in enumerate(takes(per_digit)):
        path = folder / f"{take['digit']}_{take['n']:03d}.wav"
        if not path.is_file():
            try:
                synthesise(take, path, exe)
            except subprocess.CalledProcessError as e:
                raise UserError(f"spoken-digits: espeak-ng failed for voice {take['voice']}: "
                                f"{e.stderr.decode(errors='replace')[:200]}") from None
        yield {"id": f"spoken-digits:{i}", "line": i + 1, "audio": str(path), "label": str(take["digit"]),
               "meta": {"synthetic": True, "generator": "espeak-ng", "word": WORDS[take["digit"]],
                        **{k: take[k] for k in ("voice", "speed", "pitch", "snr_db")}}}
