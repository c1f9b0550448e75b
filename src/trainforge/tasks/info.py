"""model/trainforge.json: what every later stage needs to load and use a model, written by the stage that made it.

    {"format": 1, "task": "classification", "family": "llama", "architecture": "LlamaForSequenceClassification",
     "processor": "tokenizer", "labels": ["neg", "pos"], "max_length": 128, "prompt_format": null,
     "method": "unfreeze", "adapter": false}

eval, compress, serve and the drift monitor read the task from here, never from the train stage's
config (a registered model travels without its run's config). A directory without the file (a
model the user trained elsewhere, or a run made before the file existed) is described from its
config.json once, in `read_model_info`: the only place the architecture is read to tell a
classifier from a language model.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from trainforge.errors import UserError
from trainforge.paths import MODEL_INFO_FILE

FORMAT = 1


@dataclass
class PromptFormat:
    """How a record becomes a prompt and its expected answer (SFT); saved so eval and serve frame prompts as training did."""

    prompt_field: str = "prompt"
    response_field: str = "response"
    template: str = "{text}"
    label_names: dict[str, str] = field(default_factory=dict)
    max_new_tokens: int = 16


@dataclass
class ModelInfo:
    task: str
    """A key of tasks.TASKS: classification | causal_lm | sft."""
    family: str | None = None
    """The model family (models/families.py), e.g. llama, bert."""
    architecture: str | None = None
    """The transformers class name in config.json."""
    processor: str = "tokenizer"
    """What turns raw input into model input: tokenizer (image processors and feature extractors come next)."""
    labels: list[str] = field(default_factory=list)
    """Class names in id order (classification)."""
    max_length: int | None = None
    """Tokens the model was trained on per example; longer inputs are cut."""
    prompt_format: PromptFormat | None = None
    """SFT: the prompt framing and answer field."""
    method: str | None = None
    """How it was trained (full, freeze, unfreeze, lora, prompt, prefix)."""
    adapter: bool = False
    """model/ holds a peft adapter beside base/ (models/load.py)."""
    derived: bool = False
    """True when described from config.json because trainforge.json was absent (not written to disk)."""

    def to_json(self) -> dict:
        out = {"format": FORMAT, **asdict(self)}
        out.pop("derived")
        return out


def architecture_of(model) -> tuple[str | None, str]:
    """(model_type, transformers class name) of a model as it is saved (a peft wrapper's base model)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = base.config
    return getattr(config, "model_type", None), (getattr(config, "architectures", None) or [type(base).__name__])[0]


def write_model_info(model_dir: Path, info: ModelInfo) -> Path:
    path = Path(model_dir) / MODEL_INFO_FILE
    path.write_text(json.dumps(info.to_json(), indent=1, ensure_ascii=False), encoding="utf-8")
    return path


def read_model_info(model_dir: Path) -> ModelInfo:
    """The model's trainforge.json, or a description derived from its config.json when there is none."""
    model_dir = Path(model_dir)
    path = model_dir / MODEL_INFO_FILE
    if path.is_file():
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise UserError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}); re-run the stage that wrote the model") from None
        if raw.pop("format", FORMAT) > FORMAT:
            raise UserError(f"{path}: written by a newer trainforge (format {raw.get('format')}); upgrade trainforge")
        prompt = raw.pop("prompt_format", None)
        known = set(ModelInfo.__dataclass_fields__) - {"derived"}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise UserError(f"{path}: unknown keys {', '.join(unknown)}; re-run the stage that wrote the model")
        return ModelInfo(**raw, prompt_format=PromptFormat(**prompt) if prompt else None)
    return _derive(model_dir)


def _derive(model_dir: Path) -> ModelInfo:
    config_path = model_dir / "config.json"
    if not config_path.is_file():
        raise UserError(f"{model_dir}: not a model directory (no config.json or {MODEL_INFO_FILE})")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    archs = config.get("architectures") or []
    arch = archs[0] if archs else None
    adapter = (model_dir / "adapter_config.json").is_file()
    if any(a.endswith("ForSequenceClassification") for a in archs):
        id2label = {int(k): v for k, v in (config.get("id2label") or {}).items()}
        return ModelInfo("classification", config.get("model_type"), arch, labels=[id2label[i] for i in sorted(id2label)],
                         adapter=adapter, derived=True)
    from trainforge.models.families import is_causal_lm

    if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs) or is_causal_lm(config.get("model_type", "")):
        return ModelInfo("causal_lm", config.get("model_type"), arch, adapter=adapter, derived=True)
    raise UserError(f"{model_dir}: cannot tell what task this model is for (architectures {archs or 'none'}, "
                    f"model_type {config.get('model_type')!r}) and it has no {MODEL_INFO_FILE}; trainforge serves and "
                    f"evaluates sequence classifiers and causal LMs")
