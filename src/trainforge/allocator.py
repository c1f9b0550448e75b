"""glibc malloc set up for inference: keep freed memory in the heap instead of handing it back.

A forward pass allocates and frees tensors of a few MB each (a batch of 32 reviews × 128 tokens ×
192 floats is 3 MB). glibc serves blocks that large with fresh mmap()s by default and returns freed
heap to the kernel, so every forward page-faults all of its activations in again. On this 2-core VM
that fault cost is large and erratic: the quickstart classifier at batch 32 took 135–186 ms per
forward in fp32 and 87–138 ms in INT8 from one process to the next (INT8's speedup 1.34–1.60×).
With freed memory kept, the same measurements were 132–142 ms and 84–91 ms (1.54–1.58×): both faster,
and steady (`benchmarks/compress.py`, 1 thread). This is the same fix as PyTorch's CPU tuning guide's
advice to preload jemalloc or tcmalloc, done with glibc's own knobs so nothing extra is installed.

The setting is process-wide and only raises how much freed memory the process holds on to (up to
M_TRIM_THRESHOLD of free heap before it trims). Training measured no faster with it, so only the
inference paths (compress timing, `trainforge serve`) turn it on. TRAINFORGE_KEEP_FREED_MEMORY=0 opts out.
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20
"""Blocks below this come from the heap, not mmap (32 MiB is glibc's ceiling for this knob on 64-bit)."""
TRIM_THRESHOLD = 1 << 30
"""Free heap kept before glibc trims it back to the kernel."""


@functools.cache
def keep_freed_memory() -> bool:
    """Tune glibc malloc for repeated forwards (see the module docstring); True when it is in effect.

    Idempotent. A no-op returning False off glibc (macOS, musl) or with TRAINFORGE_KEEP_FREED_MEMORY=0."""
    on = False
    if os.environ.get("TRAINFORGE_KEEP_FREED_MEMORY", "1") != "0" and platform.libc_ver()[0] == "glibc":
        try:
            libc = ctypes.CDLL("libc.so.6")
        except OSError:
            libc = None
        # mallopt returns 1 on success. Set the mmap threshold first: setting either knob turns off
        # glibc's dynamic adjustment of both, and a fixed 128 KiB mmap threshold would be the worst case.
        on = libc is not None and libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 \
            and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    return on
