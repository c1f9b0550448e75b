"""Sequence classification: a text → one of N labels (the quickstart's review sentiment).

    encode    text → token ids; label → its index in `labels` (sorted label names from the train split)
    loss      cross-entropy, a mean over the micro-batch's examples × its share of the rank's examples; with
              class weights (train.class_weights) each example's term is scaled by its class's weight
    validate  val_loss and val_accuracy; the best checkpoint is the one with the highest val_accuracy
    evaluate  evaluate/classifier.py: metrics beside TF-IDF + logistic regression, error analysis, attention, attacks
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from trainforge.batching import Encoded, collate, predict_logits
from trainforge.errors import UserError
from trainforge.tasks.base import EvalJob, ModelSpec
from trainforge.tasks.info import ModelInfo


@dataclass
class ClassificationTask:
    labels: list[str] = field(default_factory=list)
    max_length: int = 128
    class_weights: list[float] | None = None
    """Per label id, the weight of its examples in the loss (train.class_weights); None: unweighted."""

    name: ClassVar[str] = "classification"
    peft_task_type: ClassVar[str] = "SEQ_CLS"
    serves_as: ClassVar[str] = "classifier"
    token_level: ClassVar[bool] = False
    selection: ClassVar[tuple[str, bool]] = ("val_accuracy", True)
    compressible: ClassVar[bool] = True

    @classmethod
    def from_rows(cls, train_rows: list[dict], max_length: int, class_weights=None) -> "ClassificationTask":
        """The label set is the train split's, sorted (so label ids do not depend on record order).
        class_weights: None, "balanced" (n / (K × n_class), scikit-learn's rule) or {label: weight}."""
        missing = [r["id"] for r in train_rows[:1000] if "label" not in r]
        if missing:
            raise UserError(f"train.task=classification needs labels; record {missing[0]} has none (set data.sources[].label_field)")
        labels = sorted({r["label"] for r in train_rows})
        if len(labels) < 2:
            raise UserError(f"train: classification needs at least two labels in data/train.jsonl, found {labels}")
        return cls(labels, max_length, weights_for(labels, [r["label"] for r in train_rows], class_weights))

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.labels))

    def prepare_tokenizer(self, tokenizer) -> None:
        """A classifier reads the text as it is: nothing to add."""

    def encode(self, rows: list[dict], tokenizer, held_out: bool = False) -> Encoded:
        """held_out: rows scored against the training labels, so a label training never saw is refused."""
        label2id = {label: i for i, label in enumerate(self.labels)}
        ids = tokenizer([r["text"] for r in rows], truncation=True, max_length=self.max_length)["input_ids"]
        enc = Encoded(ids, [label2id.get(r["label"], -100) for r in rows])
        unseen = sum(1 for y in enc.labels if y < 0)
        if held_out and unseen:
            raise UserError(f"train: {unseen} validation records carry labels absent from training; use data.split.stratify=true")
        return enc

    def batch(self, enc: Encoded, idx: list[int], pad_id: int) -> dict:
        return collate(enc, idx, pad_id)

    def predicted_tokens(self, enc: Encoded) -> list[int]:
        # only an auxiliary next-token term (train.lm_loss) predicts tokens: every real token but the first
        return [len(ids) - 1 for ids in enc.input_ids]

    def loss(self, net, batch: dict, weights):
        if self.class_weights is None:
            return net(**batch).loss * weights.examples
        import torch
        import torch.nn.functional as F

        logits = net(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        w = torch.tensor(self.class_weights, dtype=torch.float32, device=logits.device)
        # a mean over examples of w[y] × CE, not torch's sum(w·CE) / sum(w): the micro-batch's share of the rank's
        # examples (weights.examples) then adds the accumulated micro-batches up to the global batch exactly, and
        # "balanced" weights average 1 over the split, so the loss keeps its unweighted scale
        per_example = F.cross_entropy(logits.float(), batch["labels"], weight=w, reduction="none")
        return per_example.mean() * weights.examples

    def validate(self, model, val: Encoded, pad_id: int, batch_size: int = 64) -> dict[str, float]:
        import torch

        logits = predict_logits(model, val, batch_size, pad_id)
        labels = torch.tensor(val.labels)
        return {"val_loss": float(torch.nn.functional.cross_entropy(logits, labels)),
                "val_accuracy": float((logits.argmax(-1) == labels).float().mean())}

    def build_model(self, spec: ModelSpec, tokenizer):
        from trainforge.models.presets import build_classifier

        return build_classifier(spec.model, len(tokenizer), len(self.labels), spec.max_length, spec.dropout, self.id2label,
                                tokenizer.pad_token_id, run_dir=spec.run_dir, pooling=spec.pooling, **spec.overrides)

    def load_model(self, model_dir: Path, **kwargs):
        from trainforge.models.load import load_classifier

        return load_classifier(model_dir, **kwargs)

    def model_info(self, spec: ModelSpec, model, method: str | None, adapter: bool) -> ModelInfo:
        from trainforge.tasks.info import architecture_of

        return ModelInfo(self.name, *architecture_of(model),
                         labels=list(self.labels), max_length=spec.max_length, method=method, adapter=adapter)

    def samples(self, model, tokenizer, val_rows: list[dict]) -> list[dict]:
        """Example outputs to keep beside the model after training (none for this task)."""
        return []

    def write_samples(self, samples: list[dict], model_dir: Path) -> dict:
        return {}

    def evaluate(self, job: EvalJob) -> dict[str, float]:
        from trainforge.evaluate.classifier import evaluate_classifier

        return evaluate_classifier(job)

    @classmethod
    def from_info(cls, info: ModelInfo) -> "ClassificationTask":  # a saved model: scored, not trained, so no class weights
        return cls(list(info.labels), info.max_length or 512)


def weights_for(labels: list[str], y: list[str], spec) -> list[float] | None:
    """Per label id: "balanced" gives n / (K × n_label) (scikit-learn's compute_class_weight rule: every class
    carries the same total weight); a {label: weight} dict is taken as given (unnamed labels weigh 1)."""
    if spec is None:
        return None
    if spec == "balanced":
        from collections import Counter

        counts = Counter(y)
        return [len(y) / (len(labels) * counts[label]) for label in labels]
    if isinstance(spec, dict):
        unknown = sorted(set(spec) - set(labels))
        if unknown:
            raise UserError(f"train.class_weights names labels absent from data/train.jsonl: {unknown} (labels: {labels})")
        return [float(spec.get(label, 1.0)) for label in labels]
    raise UserError(f"train.class_weights: {spec!r} is not `balanced`, a {{label: weight}} map or null")
