"""Audio: reading WAV/FLAC (waves.py), log-mel features (features.py), the AST classifier (models.py),
the built-in `spoken-digits` (spoken_digits.py) and evaluation beside majority and MFCC + LR baselines (evaluate.py).
The task is tasks/audio_classification.py. torchaudio has no CPU build for this torch: everything here is
soundfile, scipy and transformers' numpy feature extractors."""
