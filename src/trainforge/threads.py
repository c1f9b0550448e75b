"""torch's intra-op thread count, set for a piece of work and always put back.

Every stage and measurement that wants a different thread count goes through `torch_threads`, so a
stage that sets 1 thread (small models, latency timing) cannot leave the next stage, or a test, on it.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with `n` torch threads (None or 0: leave the count as it is), then restore it."""
    import torch

    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
