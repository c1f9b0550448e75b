"""Exact dedup: a Bloom filter sized from (expected count, false-positive rate), or exact hashes.

Sizing (the optimum for n keys at false-positive rate p):

    m = ceil(-n · ln p / (ln 2)²) bits,   k = round(m / n · ln 2) hash functions

The k bit positions come from one 128-bit blake2b digest by double hashing (Kirsch–Mitzenmacher:
g_i = h1 + i·h2 mod m), checked and set for a whole batch at once with numpy. The filter persists as
`<path>.npy` (the bits) + `<path>.json` (m, k, n, p, inserted), so a later batch is deduplicated
against everything seen before. The false-positive rate is *measured* by probing keys that were
never inserted.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np

from trainforge.errors import UserError


def digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


def optimal_bits(n: int, p: float) -> int:
    return max(8, math.ceil(-n * math.log(p) / (math.log(2) ** 2)))


class BloomFilter:
    def __init__(self, capacity: int, fp_rate: float):
        if not 0 < fp_rate < 1:
            raise UserError(f"bloom false-positive rate must be in (0, 1), got {fp_rate}")
        self.capacity = max(int(capacity), 1)
        self.fp_rate = fp_rate
        self.m = optimal_bits(self.capacity, fp_rate)
        self.k = max(1, round(self.m / self.capacity * math.log(2)))
        self.bits = np.zeros((self.m + 7) // 8, dtype=np.uint8)
        self.inserted = 0
        self.inserted_at_open = 0  # keys from earlier runs (a filter loaded from disk)

    @property
    def nbytes(self) -> int:
        return int(self.bits.nbytes)

    def _positions(self, digests: list[bytes]) -> np.ndarray:
        """(B, k) bit positions."""
        raw = np.frombuffer(b"".join(digests), dtype=np.uint64).reshape(-1, 2)
        h1, h2 = raw[:, 0:1], raw[:, 1:2] | np.uint64(1)
        i = np.arange(self.k, dtype=np.uint64)[None, :]
        return (h1 + i * h2) % np.uint64(self.m)

    def contains(self, digests: list[bytes]) -> np.ndarray:
        if not digests:
            return np.zeros(0, dtype=bool)
        pos = self._positions(digests)
        hit = (self.bits[pos >> np.uint64(3)] >> (pos & np.uint64(7)).astype(np.uint8)) & 1
        return hit.all(axis=1)

    def add(self, digests: list[bytes]) -> None:
        if not digests:
            return
        pos = self._positions(digests).ravel()
        np.bitwise_or.at(self.bits, pos >> np.uint64(3), (np.uint8(1) << (pos & np.uint64(7)).astype(np.uint8)))
        self.inserted += len(digests)

    def seen_before(self, digests: list[bytes]) -> np.ndarray:
        """For a batch in order: True where the key was in the filter or earlier in the batch; then adds all."""
        out = self.contains(digests)
        first: set[bytes] = set()
        for i, d in enumerate(digests):
            if d in first:
                out[i] = True
            first.add(d)
        self.add(digests)
        return out

    def merge(self, other: "BloomFilter") -> "BloomFilter":
        """Fold in a filter built elsewhere (another worker, another machine's batch) with the same size and
        hashes: bitwise OR, so the result is bit-for-bit the filter that would have seen both key sets.
        `inserted` becomes the sum (an upper bound on the distinct keys: the two sets may overlap)."""
        if (self.m, self.k) != (other.m, other.k):
            raise UserError(f"cannot merge Bloom filters of different shapes ({self.m} bits × {self.k} hashes vs "
                            f"{other.m} × {other.k}): build them with the same capacity and false-positive rate")
        np.bitwise_or(self.bits, other.bits, out=self.bits)
        self.inserted += other.inserted
        return self

    def measured_fp_rate(self, probes: int = 200_000, seed: int = 0) -> float:
        """Share of random never-inserted keys the filter claims to contain."""
        rng = np.random.default_rng(seed)
        keys = rng.integers(0, 1 << 63, size=(probes, 2), dtype=np.uint64).tobytes()
        digests = [keys[i : i + 16] for i in range(0, len(keys), 16)]
        return float(self.contains(digests).mean())

    def expected_fp_rate(self) -> float:
        n = max(self.inserted, 1)
        return (1 - math.exp(-self.k * n / self.m)) ** self.k

    def save(self, path: Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path.with_suffix(".npy"), self.bits)
        meta = {"capacity": self.capacity, "fp_rate": self.fp_rate, "m": self.m, "k": self.k, "inserted": self.inserted}
        path.with_suffix(".json").write_text(json.dumps(meta, indent=1))

    @classmethod
    def load(cls, path: Path) -> "BloomFilter":
        path = Path(path)
        try:
            meta = json.loads(path.with_suffix(".json").read_text())
            bits = np.load(path.with_suffix(".npy"))
        except (OSError, ValueError, json.JSONDecodeError) as e:
            raise UserError(f"{path}: cannot load the Bloom filter state ({e}); delete it to start fresh") from None
        bf = cls(meta["capacity"], meta["fp_rate"])
        if bits.shape != bf.bits.shape:
            raise UserError(f"{path}: Bloom filter bits do not match its metadata; delete it to start fresh")
        bf.bits, bf.inserted = bits, meta["inserted"]
        bf.inserted_at_open = bf.inserted
        return bf

    @classmethod
    def open_or_create(cls, path: Path | None, capacity: int, fp_rate: float) -> "BloomFilter":
        if path is not None and Path(path).with_suffix(".json").is_file():
            return cls.load(path)
        return cls(capacity, fp_rate)


class ExactHashSet:
    """The no-false-positive mode: a set of 128-bit digests (16 bytes + set overhead per key)."""

    def __init__(self):
        self.seen: set[bytes] = set()

    def seen_before(self, digests: list[bytes]) -> np.ndarray:
        out = np.zeros(len(digests), dtype=bool)
        for i, d in enumerate(digests):
            out[i] = d in self.seen
            self.seen.add(d)
        return out
