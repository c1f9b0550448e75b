"""Config of the eval stage."""

from __future__ import annotations

from typing import Literal

from trainforge.section import Section


class EvalConfig(Section):
    """Score the trained model and a simple baseline on the same held-out split."""

    split: Literal["test", "val"] = "test"
    """Which held-out split to score."""
    baseline: Literal["tfidf-lr", "none"] = "tfidf-lr"
    """The simple model every metric is printed beside."""
    batch_size: int = 64
    """Examples per forward pass while predicting."""
