"""MFCCs from log-mels, and the two baselines the audio classifier is reported beside."""

from __future__ import annotations

import numpy as np

from trainforge.audio.evaluate import majority_probs, mfcc_lr_probs
from trainforge.audio.features import feature_extractor, log_mels, mfcc, mfcc_summary


def test_mfcc_is_the_orthonormal_dct_ii_over_the_mel_axis():
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(2, 5, 8))
    m = np.arange(8)
    basis = np.cos(np.pi * (2 * m[None, :] + 1) * np.arange(8)[:, None] / 16)  # DCT-II by hand
    scale = np.full(8, np.sqrt(2 / 8))
    scale[0] = np.sqrt(1 / 8)
    expected = np.einsum("ntm,km->ntk", feats, basis) * scale
    np.testing.assert_allclose(mfcc(feats, 8), expected, atol=1e-10)
    np.testing.assert_allclose(mfcc(feats, 3), expected[..., :3], atol=1e-10)
    assert mfcc_summary(feats, 3).shape == (2, 15)


def test_mfcc_lr_separates_constructed_spectra_and_majority_predicts_the_commonest():
    rng = np.random.default_rng(1)
    n, t, m = 60, 20, 16
    y = np.arange(n) % 3
    feats = rng.normal(scale=0.3, size=(n, t, m))
    for i in range(n):
        feats[i, :, 4 * y[i]:4 * y[i] + 4] += 2.0  # each class has energy in its own mel band
    probs = mfcc_lr_probs(feats[:45], list(y[:45]), feats[45:], 4, seed=0)
    assert probs.shape == (15, 4) and np.all(probs[:, 3] == 0)  # a label the baseline never saw gets 0
    assert (probs.argmax(1) == y[45:]).mean() == 1.0
    maj = majority_probs([2, 2, 1, 0, 2], 3, 3)
    assert maj.argmax(1).tolist() == [2, 2, 2] and maj.sum() == 3


def test_log_mels_have_the_configured_shape(tone_rows):
    from trainforge.audio.waves import load_waves

    fe = feature_extractor(16000, 32, 40)
    feats = log_mels(fe, load_waves(tone_rows[:3], 16000))
    assert tuple(feats.shape) == (3, 40, 32)
    low, high = feats[0].mean(0), feats[2].mean(0)  # 300 Hz vs 3000 Hz: energy in lower vs higher mel bins
    assert int(low.argmax()) < int(high.argmax())
