"""Loading a model directory for serving, and the two kinds of model we serve.

Only safetensors weights are loaded: a directory holding pickle weights (pytorch_model.bin, *.pt)
and no model.safetensors is refused, and `use_safetensors=True` stops transformers from falling
back to pickle. Paths come from the command line or the registry, never from a request.

    ClassifierEngine  AutoModelForSequenceClassification → label + probabilities per text
    GeneratorEngine   AutoModelForCausalLM → tokens, decoded with a KV cache by batching.py

Each engine is loaded onto one device in one dtype (serve.device, serve.dtype: bf16 on a GPU that has
it, fp32 on the CPU) and moves its inputs there; probabilities and token ids come back as Python
numbers. A compress/ INT8 variant stays on the CPU in fp32: torch.ao's int8 linears are CPU kernels.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from trainforge.errors import UserError

log = logging.getLogger("trainforge.serve")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")
DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def serving_dtype(dtype: str, device, key: str = "serve.dtype"):
    """The torch dtype `dtype` (auto | fp32 | bf16 | fp16) means on `device`: auto is bf16 on a GPU that has it, else fp32."""
    import torch

    from trainforge.device import resolve_precision

    return getattr(torch, DTYPES[resolve_precision(dtype, device, key)])


def _place(model, device, dtype):
    """`model` on `device` in `dtype`; a CPU fp32 model is left as loaded (nothing to move)."""
    import torch

    if device is None or (device.type == "cpu" and dtype in (None, torch.float32)):
        return model
    return model.to(device=device, dtype=dtype)


def check_model_dir(path: Path) -> dict:
    """The model's config.json, after refusing anything that is not a safetensors HF directory."""
    if not (path / "config.json").is_file():
        raise UserError(f"{path}: not a model directory (no config.json); pass a run dir, a model dir or models:/NAME@ALIAS")
    if not list(path.glob("*.safetensors")):
        pickles = [p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES]
        hint = f" (found pickle weights {', '.join(pickles)}: convert them with safetensors first)" if pickles else ""
        raise UserError(f"{path}: no *.safetensors weights{hint}; trainforge serve loads safetensors only")
    return json.loads((path / "config.json").read_text())


@dataclass
class ClassifierEngine:
    """A sequence classifier: texts → probabilities over its labels."""

    model: object
    tokenizer: object
    labels: list[str]
    max_length: int
    kind: str = "classifier"

    @property
    def device(self):
        from trainforge.batching import model_device

        return model_device(self.model)

    @classmethod
    def load(cls, path: Path, device=None, dtype=None) -> "ClassifierEngine":
        """device, dtype: a torch.device and torch dtype (None: the CPU in fp32)."""
        from trainforge.models.load import load_classifier
        from trainforge.models.tokenizer import load_tokenizer

        if (path / "trainforge_compression.json").is_file():  # a compress/ variant (int8, pruned): its own loader
            from trainforge.compress.load import load_variant, read_meta

            model = load_variant(path)
            if read_meta(path).get("format") == "int8":
                if device is not None and device.type != "cpu":
                    log.warning("%s: an INT8 variant runs torch.ao's CPU int8 kernels; serving it on cpu in fp32, not %s",
                                path, device)
                device = dtype = None
        else:
            model = load_classifier(path, use_safetensors=True)  # a plain HF dir, or a prompt/prefix adapter + base/
        model = _place(model, device, dtype)
        tokenizer = load_tokenizer(path)  # decoder classifiers often ship without a pad token: eos stands in
        if model.config.pad_token_id is None:
            model.config.pad_token_id = tokenizer.pad_token_id
        id2label = {int(k): v for k, v in model.config.id2label.items()}
        limit = min(int(tokenizer.model_max_length or 512), int(getattr(model.config, "max_position_embeddings", 512) or 512))
        return cls(model, tokenizer, [id2label[i] for i in sorted(id2label)], limit)

    def token_ids(self, texts: list[str]) -> list[list[int]]:
        return token_ids(self.tokenizer, texts)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, truncation=False, verbose=False)["input_ids"])

    def classify(self, texts: list[str]) -> list[dict[str, float]]:
        """One {label: probability} per text, in one padded forward pass."""
        import torch

        from trainforge.device import to_device

        enc = self.tokenizer(texts, truncation=True, max_length=self.max_length, padding=True, return_tensors="pt")
        enc = to_device(dict(enc), self.device)
        with torch.inference_mode():
            probs = torch.softmax(self.model(**enc).logits.float(), -1)  # (B, num_labels)
        return [{lab: float(p) for lab, p in zip(self.labels, row)} for row in probs.tolist()]


@dataclass
class GeneratorEngine:
    """A causal LM; batching.GenerationBatcher drives its decode loop."""

    model: object
    tokenizer: object
    eos_ids: set[int] = field(default_factory=set)
    kind: str = "generator"

    @property
    def device(self):
        from trainforge.batching import model_device

        return model_device(self.model)

    @classmethod
    def load(cls, path: Path, device=None, dtype=None) -> "GeneratorEngine":
        """device, dtype: a torch.device and torch dtype (None: the CPU in fp32)."""
        from trainforge.models.load import load_causal_lm, refuse_virtual_tokens
        from trainforge.models.tokenizer import load_tokenizer

        model = load_causal_lm(path, use_safetensors=True)
        refuse_virtual_tokens(model, path, "serve's KV-cache decoder feeds the model one new token at a time and "
                              "cannot carry peft's virtual tokens", "train the generator with method lora or full to serve it")
        model = _place(model, device, dtype)
        tokenizer = load_tokenizer(path)
        eos = model.generation_config.eos_token_id if model.generation_config else None
        eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if tokenizer.eos_token_id is not None:
            eos_ids.add(tokenizer.eos_token_id)
        return cls(model, tokenizer, eos_ids)

    @property
    def pad_id(self) -> int:
        tok = self.tokenizer
        return tok.pad_token_id if tok.pad_token_id is not None else (next(iter(self.eos_ids)) if self.eos_ids else 0)

    @property
    def max_positions(self) -> int:
        return int(getattr(self.model.config, "max_position_embeddings", 2048) or 2048)

    def token_ids(self, texts: list[str]) -> list[list[int]]:
        return token_ids(self.tokenizer, texts)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=True)["input_ids"]

    def chat_prompt(self, messages: list[dict]) -> str:
        """The model's chat template when it has one; else a plain 'role: content' transcript."""
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        lines = [f"{m['role']}: {m['content']}" for m in messages]
        return "\n".join(lines) + "\nassistant:"

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)


def token_ids(tokenizer, texts: list[str]) -> list[list[int]]:
    """Token ids without special tokens (the drift monitor's token distribution)."""
    return tokenizer(texts, add_special_tokens=False, truncation=False, verbose=False)["input_ids"]


def load_engine(path: Path, device=None, dtype=None):
    """The engine for what the model was trained for (its model/trainforge.json, tasks/info.py), on
    `device` in `dtype` (None: the CPU in fp32)."""
    from trainforge.tasks import task_for

    check_model_dir(path)
    task, _ = task_for(path)
    if getattr(task, "input_kind", "text") == "image":  # image classifiers (tasks/image_classification.py)
        from trainforge.vision.serve import ImageClassifierEngine

        return ImageClassifierEngine.load(path, device, dtype)
    if getattr(task, "input_kind", "text") not in ("text", "image"):  # audio: no request format for clips yet
        from trainforge.errors import UserError

        raise UserError(f"{path}: a {task.name} model takes {task.input_kind} input; trainforge serve answers text and "
                        f"image requests only — score clips with `trainforge eval` instead")
    if task.serves_as not in ("classifier", "generator"):
        from trainforge.errors import UserError

        raise UserError(f"{path}: a {task.name} model ({task.serves_as}); trainforge serve answers classifiers and "
                        f"generators — embed with trainforge.vision.clip.embed, score with `trainforge eval` instead")
    engine = ClassifierEngine if task.serves_as == "classifier" else GeneratorEngine
    return engine.load(path, device, dtype)
