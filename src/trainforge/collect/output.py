"""Where collected documents go, and the funnel that proves none was lost.

    fetched ──▶ kept (collect/records.jsonl)
           └──▶ failed (collect/failed.jsonl, one line each: source, where, reason)

    fetched == kept + sum(failed.values()), per source and in total

A kept record is what the data stage reads: {"id", "text", "label"?, "source", "content_sha256",
"url"?, "title"?, "date"?, "fetched_at"?, …metadata}. `content_sha256` is the sha256 of the UTF-8 text,
so the same page fetched twice (two URLs, two runs) is recognisably the same content.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from pathlib import Path


def content_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Collected:
    """Appends kept records and failures as they come; counts per source and reason."""

    def __init__(self, out: Path, min_chars: int = 1):
        out.mkdir(parents=True, exist_ok=True)
        self.out = out
        self.min_chars = min_chars
        self._records = open(out / "records.jsonl", "w", encoding="utf-8", errors="replace")
        self._failed = open(out / "failed.jsonl", "w", encoding="utf-8", errors="replace")
        self.fetched: Counter = Counter()
        self.kept: Counter = Counter()
        self.failed: dict[str, Counter] = {}
        self.extra: dict[str, dict] = {}
        self.seconds: Counter = Counter()

    def keep(self, source: str, rid: str, text: str | None, label: str | None = None, **meta) -> bool:
        """One fetched document: kept when it has text (≥ min_chars), else failed with `empty_text`."""
        self.fetched[source] += 1
        if not isinstance(text, str):
            self._fail(source, rid, "non_string_text" if text is not None else "no_text", meta)
            return False
        if len(text.strip()) < self.min_chars:
            self._fail(source, rid, "empty_text", meta)
            return False
        row = {"id": rid, "text": text}
        if label is not None:
            row["label"] = label
        row |= {"source": source, "content_sha256": content_sha256(text)}
        row |= {k: v for k, v in meta.items() if v is not None}
        self._records.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
        self.kept[source] += 1
        return True

    def fail(self, source: str, where: str, reason: str, **info) -> None:
        """A fetched document that did not become a record (an HTTP error page, no main text, bad JSON)."""
        self.fetched[source] += 1
        self._fail(source, where, reason, info)

    def _fail(self, source: str, where: str, reason: str, info: dict) -> None:
        self.failed.setdefault(source, Counter())[reason] += 1
        shown = {k: (v[:500] if isinstance(v, str) else v) for k, v in info.items() if v is not None}
        self._failed.write(json.dumps({"source": source, "where": where, "reason": reason, **shown},
                                      ensure_ascii=False, default=str) + "\n")

    def note(self, source: str, **extra) -> None:
        """Source-specific counts (requests, retries, robots.txt refusals…) shown beside the funnel."""
        self.extra.setdefault(source, {}).update(extra)

    def stats(self, kinds: dict[str, str]) -> dict:
        self._records.close()
        self._failed.close()
        per = {}
        for name, kind in kinds.items():
            failed = dict(self.failed.get(name, {}))
            fetched, kept = self.fetched[name], self.kept[name]
            if fetched != kept + sum(failed.values()):
                raise AssertionError(f"collect funnel of '{name}' does not reconcile: fetched {fetched} != kept {kept} + failed {failed}")
            per[name] = {"kind": kind, "fetched": fetched, "kept": kept, "failed": failed,
                         "seconds": round(self.seconds[name], 3), **self.extra.get(name, {})}
        failed_total: Counter = Counter()
        for c in self.failed.values():
            failed_total.update(c)
        return {"fetched": sum(self.fetched.values()), "kept": sum(self.kept.values()), "failed": dict(failed_total),
                "sources": per}
