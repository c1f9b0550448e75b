"""Loading a run's model/ for every later stage (eval, attention maps, serve, drift monitor, compress).

model/ is one of two layouts:

    plain HF directory                       adapter directory (train.method prompt | prefix, or lora
    (full / freeze / unfreeze / merged lora) with lora.merge=false)
    ─────────────────────────────────        ─────────────────────────────────────────────────────────
    config.json  model.safetensors           adapter_config.json  adapter_model.safetensors   (peft)
    tokenizer files  trainer_state.json      config.json          the base model's config (id2label,
                                                                  architectures) so tools that only
                                                                  read config.json keep working
                                             tokenizer files  trainer_state.json
                                             base/                the untouched base model (HF format,
                                                                  safetensors), saved before peft wrapped it

An adapter directory loads as `PeftModel.from_pretrained(<base/>, model/)`; the adapter's recorded
`base_model_name_or_path` is never used (a preset-built base has none, and a path recorded at
training time may have moved with the run directory).

Prompt and prefix tuning cannot be merged into the weights: the loaders return the PeftModel,
whose forward prepends the learned virtual tokens (prompt) or key/value prefixes (prefix). LoRA
adapters are merged on load (`merge_and_unload`, same outputs), so callers get a plain model.
"""

from __future__ import annotations

from pathlib import Path

from trainforge.errors import UserError

ADAPTER_CONFIG = "adapter_config.json"
BASE_DIR = "base"
"""model/base/: the base model an adapter directory applies to."""


def is_adapter_dir(model_dir: str | Path) -> bool:
    return (Path(model_dir) / ADAPTER_CONFIG).is_file()


def save_base(model, model_dir: Path) -> None:
    """Write the base model to model_dir/base/ before peft wraps it (prompt/prefix tuning never changes
    its weights; the trained classification head travels in the adapter as a modules_to_save copy)."""
    model.save_pretrained(Path(model_dir) / BASE_DIR, safe_serialization=True)


def save_adapter_dir(peft_model, tokenizer, model_dir: Path) -> None:
    """The adapter, the tokenizer and the base's config.json into model_dir (base/ is already there)."""
    model_dir = Path(model_dir)
    if not (model_dir / BASE_DIR / "config.json").is_file():
        raise RuntimeError(f"{model_dir / BASE_DIR}: the base model was not saved before peft wrapped it")
    peft_model.save_pretrained(model_dir, safe_serialization=True)
    tokenizer.save_pretrained(model_dir)
    base = peft_model.get_base_model()
    base.config.architectures = [type(base).__name__]  # serve and eval tell classifier from LM by this
    base.config.save_pretrained(model_dir)


def load_classifier(model_dir: str | Path, **kwargs):
    """A sequence classifier from a plain HF directory or an adapter directory, in eval mode.
    `kwargs` go to the (base) model's from_pretrained, e.g. attn_implementation="eager"."""
    from transformers import AutoModelForSequenceClassification

    return _load(Path(model_dir), AutoModelForSequenceClassification, kwargs)


def load_causal_lm(model_dir: str | Path, **kwargs):
    """A causal LM from a plain HF directory or an adapter directory, in eval mode."""
    from transformers import AutoModelForCausalLM

    return _load(Path(model_dir), AutoModelForCausalLM, kwargs)


def _load(model_dir: Path, auto_class, kwargs: dict):
    if not is_adapter_dir(model_dir):
        return auto_class.from_pretrained(model_dir, **kwargs).eval()
    base_dir = model_dir / BASE_DIR
    if not (base_dir / "config.json").is_file():
        raise UserError(f"{model_dir}: holds a peft adapter ({ADAPTER_CONFIG}) but no base model in {base_dir}; "
                        f"re-run `trainforge run CONFIG --only train` to write both")
    from peft import PeftModel

    base = auto_class.from_pretrained(base_dir, **kwargs)
    model = PeftModel.from_pretrained(base, model_dir)
    if not model.active_peft_config.is_prompt_learning:
        model = model.merge_and_unload()
    return model.eval()


def virtual_tokens(model) -> tuple[str | None, int]:
    """("prompt" | "prefix", how many) for a prompt-learning PeftModel; (None, 0) for any other model.

    prompt: the forward prepends n learned embeddings, so every hidden state, attention map and LM
            logit sequence is n positions longer than the input;
    prefix: every layer's keys and values get n learned entries; queries and outputs keep the input length.
    """
    config = getattr(model, "active_peft_config", None)
    if config is None or not config.is_prompt_learning:
        return None, 0
    kind = "prefix" if config.peft_type.value == "PREFIX_TUNING" else "prompt"
    return kind, int(config.num_virtual_tokens)


def refuse_virtual_tokens(model, model_dir: str | Path, what: str, instead: str) -> None:
    """A UserError when `model` carries virtual tokens, for work that needs a plain model."""
    kind, n = virtual_tokens(model)
    if kind:
        raise UserError(f"{model_dir}: a {kind}-tuned model ({n} virtual tokens, train.method={kind}) — {what}; {instead}")
