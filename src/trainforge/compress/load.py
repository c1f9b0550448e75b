"""Saving and loading compressed variants — Hugging Face layout, safetensors only, never pickle.

Every variant folder holds config.json, the tokenizer files and trainforge_compression.json:

    {"format": "hf"}                         plain save_pretrained (magnitude-pruned, distilled, Llama
                                             structured): AutoModel*.from_pretrained loads it as is
    {"format": "hf-structured", ...}         BERT with heads removed: weights are plain safetensors but
                                             the config cannot express the head count (see prune.py)
    {"format": "int8", "runtime": ...}       model.int8.safetensors with int8 codes + fp32 scales
                                             (see quantize.py); runtime "dynamic" or "weight_only"

`load_variant(dir)` reads any of them (and a folder without the file, e.g. model/).
"""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn

from trainforge.errors import UserError

META = "trainforge_compression.json"
INT8_WEIGHTS = "model.int8.safetensors"


def save_variant(model: nn.Module, out: Path, tokenizer, meta: dict) -> Path:
    """Write `model` (plain or int8 stored form) to `out` with its tokenizer and metadata."""
    from safetensors.torch import save_file

    from trainforge.compress.quantize import int8_state_dict

    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.safetensors"):
        stale.unlink()
    if meta["format"] == "int8":
        model.config.save_pretrained(out)
        save_file(int8_state_dict(model), out / INT8_WEIGHTS, metadata={"format": "pt", "trainforge": "int8"})
    else:
        model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / META).write_text(json.dumps(meta, indent=2))
    return out


def read_meta(model_dir: Path) -> dict:
    p = Path(model_dir) / META
    if not p.is_file():
        return {"format": "hf"}
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{p}: not valid JSON ({e}); re-run `trainforge compress` to rewrite it") from None


def usable_kernel(kernel: str | None, model_dir: Path) -> str | None:
    """The recorded INT8 kernel when this torch build has it; else torch's default, said out loud."""
    from trainforge.compress.quantize import available_kernels

    if kernel is None or kernel in available_kernels():
        return kernel
    from trainforge.console import console

    console.print(f"[yellow]{model_dir}: INT8 weights were packed for {kernel}, which this torch build lacks; "
                  f"using its default kernel (speed may differ from the recorded measurements)[/]")
    return None


def load_variant(model_dir: str | Path) -> nn.Module:
    """The model in `model_dir`, whichever way it was compressed, in eval mode."""
    from safetensors.torch import load_file
    from transformers import AutoConfig

    from trainforge.models.load import classifier_from_config, load_classifier

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise UserError(f"{model_dir}: no config.json — not a model folder (expected e.g. runs/<name>/compress/int8_dynamic)")
    meta = read_meta(model_dir)
    fmt = meta.get("format")
    if fmt == "hf":
        return load_classifier(model_dir)
    config = AutoConfig.from_pretrained(model_dir)
    model = classifier_from_config(config)
    if fmt == "hf-structured":
        from trainforge.compress.prune import reshape_like

        reshape_like(model, meta["structure"])
        state = load_file(model_dir / "model.safetensors")
    elif fmt == "int8":
        from trainforge.compress.quantize import to_dynamic_int8, to_weight_only_int8

        model = to_weight_only_int8(model)  # the stored form's shapes; its values come from the file
        state = load_file(model_dir / INT8_WEIGHTS)
    else:
        raise UserError(f"{model_dir / META}: unknown format {fmt!r} (expected hf, hf-structured or int8)")
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if not k.endswith("position_ids")]:
        raise UserError(f"{model_dir}: weights do not match the recorded structure (missing {missing[:3]}, unexpected {unexpected[:3]})")
    if fmt == "int8" and meta.get("runtime") == "dynamic":
        model = to_dynamic_int8(model, usable_kernel(meta.get("kernel"), model_dir))
    return model.eval()
