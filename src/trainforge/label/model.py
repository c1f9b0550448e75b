"""A saved classifier as the active learner sees it: texts → probabilities, and texts → embeddings for k-center.

The model is whatever the train stage wrote (model/trainforge.json names the task; tasks.task_for reads it), so
a run's own classifier ranks its pool. Embeddings are the last hidden layer mean-pooled over the real tokens:
the body's view of a text, the same for an encoder and a decoder classifier.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trainforge.errors import UserError


class SavedClassifier:
    def __init__(self, model_dir: Path | str, batch_size: int = 64):
        from trainforge.models.tokenizer import load_tokenizer
        from trainforge.tasks import task_for

        self.model_dir = Path(model_dir)
        task, info = task_for(self.model_dir)
        if info.task != "classification":
            raise UserError(f"{model_dir}: a {info.task} model; `trainforge label` ranks records with a classifier")
        self.model = task.load_model(self.model_dir).eval()
        self.tokenizer = load_tokenizer(self.model_dir)
        self.labels = [self.model.config.id2label[i] for i in sorted(self.model.config.id2label)]
        self.batch_size = batch_size
        self.max_length = min(int(self.tokenizer.model_max_length or 512), info.max_length or 512)
        self.version = _weights_version(self.model_dir)

    def _batches(self, texts: list[str]):
        import torch

        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        for s in range(0, len(texts), self.batch_size):
            ids = self.tokenizer(texts[s : s + self.batch_size], truncation=True, max_length=self.max_length)["input_ids"]
            longest = max(map(len, ids))
            x = torch.full((len(ids), longest), pad, dtype=torch.long)  # B, T
            mask = torch.zeros_like(x)
            for row, seq in enumerate(ids):
                x[row, : len(seq)], mask[row, : len(seq)] = torch.tensor(seq), 1
            yield x, mask

    def score(self, texts: list[str], embeddings: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """(probabilities N × K in `labels` order, embeddings N × D or None)."""
        import torch

        probs, embs = [], []
        with torch.no_grad():
            for x, mask in self._batches(list(texts)):
                out = self.model(input_ids=x, attention_mask=mask, output_hidden_states=embeddings)
                probs.append(torch.softmax(out.logits.float(), -1).numpy())
                if embeddings:
                    h = out.hidden_states[-1].float()  # B, T, D
                    m = mask.unsqueeze(-1).float()
                    embs.append(((h * m).sum(1) / m.sum(1).clamp(min=1)).numpy())
        if not probs:
            return np.zeros((0, len(self.labels))), (np.zeros((0, 0)) if embeddings else None)
        return np.concatenate(probs), (np.concatenate(embs) if embeddings else None)


def _weights_version(model_dir: Path) -> str:
    """A short, stable name for the weights (Label Studio shows it as the prediction's model_version)."""
    import hashlib

    h = hashlib.sha256()
    for f in sorted(model_dir.glob("*.safetensors")):
        h.update(f.read_bytes())
    return f"{model_dir.parent.name or model_dir.name}-{h.hexdigest()[:12]}"
