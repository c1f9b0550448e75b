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
from trainforge.models.families import new_classifier, saved_classifier_class

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
    model_dir = Path(model_dir)
    config_dir = model_dir / BASE_DIR if is_adapter_dir(model_dir) else model_dir
    return _load(model_dir, classifier_class(_architectures(config_dir)), kwargs)


def classifier_class(architectures: list[str] | None):
    """The class that rebuilds a saved classifier: the ensemble (models/ensemble.py), a family's own pooled
    head (concat pooling, models/pooling.py), else AutoModelForSequenceClassification."""
    from trainforge.models import ensemble

    if architectures and architectures[0] == ensemble.ARCHITECTURE:  # train.ensemble > 1
        return ensemble.EnsembleForSequenceClassification
    return saved_classifier_class(architectures)


def classifier_from_config(config):
    """A freshly initialised classifier of the architecture `config` records (compressed variants, students)."""
    from trainforge.models import ensemble

    if (getattr(config, "architectures", None) or [None])[0] == ensemble.ARCHITECTURE:
        return ensemble.EnsembleForSequenceClassification(config)
    return new_classifier(config)


def _architectures(model_dir: Path) -> list[str] | None:
    import json

    p = model_dir / "config.json"
    return json.loads(p.read_text()).get("architectures") if p.is_file() else None


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
    pool_last_real_token(model)
    return model.eval()


def pool_last_real_token(model) -> None:
    """Make a prompt-tuned decoder classifier read its last real token, whatever the padding.

    peft's prompt tuning calls the classifier with inputs_embeds only ([virtual tokens; text]), so
    transformers cannot find the last non-pad token from input_ids and reads position -1 — a pad
    in every right-padded row. A text's probabilities then depended on the longest text in its batch
    (measured: 0.64 alone, 0.87 beside a longer review). This hook on the backbone moves each row's
    last real hidden state (found from the attention mask) to position -1, where the head reads it.
    Called when training starts (methods.py) and on every load; encoders read position 0 (<p0>) and
    prefix tuning passes input_ids, so neither needs it."""
    kind, _ = virtual_tokens(model)
    base = model.get_base_model() if kind else None
    if kind != "prompt" or not hasattr(base, "score") or getattr(base, "_pools_last_real_token", False):
        return

    def last_real_at_end(module, args, kwargs, output):
        import torch

        mask = kwargs.get("attention_mask")
        if mask is None or mask.dim() != 2:
            return output
        hidden = output.last_hidden_state  # B, V+T, C
        last = mask.shape[1] - 1 - mask.flip(-1).argmax(-1)  # B: index of each row's last 1 in the mask
        pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        output.last_hidden_state = torch.cat([hidden[:, :-1], pooled[:, None]], dim=1)
        return output

    getattr(base, base.base_model_prefix).register_forward_hook(last_real_at_end, with_kwargs=True)
    base._pools_last_real_token = True


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
