"""ONNX export of a sequence classifier, checked by running it in onnxruntime.

torch.onnx.export (the torch.export-based exporter, which needs onnxscript) writes a graph with a
dynamic batch and sequence axis; onnxruntime then scores the same batches as PyTorch and the
largest absolute logit difference is the parity figure. A graph that does not match is reported
as failed, never silently shipped.
"""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from pathlib import Path

import torch
from torch import nn

from trainforge.errors import UserError


class _LogitsOnly(nn.Module):
    """(input_ids, attention_mask) → logits: the signature a server calls, nothing optional."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


def _require(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(f"compress.onnx needs {module}: pip install 'trainforge[compress]' (or set compress.onnx: false)") from None


# torch's exporter logs "torchvision is not installed. Skipping torchvision::nms" (and three more) at WARNING
# while it builds its operator registry: torchvision ops are not in a text classifier, so this says nothing to
# the user. The logger is quieted for the export only; anything at ERROR still shows.
_REGISTRY_LOGGER = "torch.onnx._internal.exporter._registration"


@contextlib.contextmanager
def _quiet_logger(name: str, level: int = logging.ERROR):
    log = logging.getLogger(name)
    before = log.level
    log.setLevel(level)
    try:
        yield
    finally:
        log.setLevel(before)


def export_onnx(model: nn.Module, example: dict[str, torch.Tensor], path: Path) -> Path:
    """Write `path` (one file, weights inside) with dynamic batch and sequence axes."""
    _require("onnxscript")
    _require("onnx")
    path.parent.mkdir(parents=True, exist_ok=True)
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence", min=2, max=4096)
    shapes = {"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}}
    with warnings.catch_warnings(), _quiet_logger(_REGISTRY_LOGGER):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            _LogitsOnly(model.eval()),
            (example["input_ids"], example["attention_mask"]),
            dynamic_shapes=(shapes["input_ids"], shapes["attention_mask"]),
            input_names=["input_ids", "attention_mask"],
            output_names=["logits"],
            dynamo=True,
            verbose=False,
        )
    program.save(str(path), external_data=False)
    return path


def onnx_parity(model: nn.Module, onnx_path: Path, batches: list[dict[str, torch.Tensor]], threads: int = 1) -> dict:
    """Max |logit difference| and argmax agreement between onnxruntime and PyTorch over `batches`."""
    ort = _require("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    worst, agree, n = 0.0, 0, 0
    with torch.inference_mode():
        for b in batches:
            ref = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits.float()
            got = torch.from_numpy(session.run(["logits"], {k: b[k].numpy() for k in ("input_ids", "attention_mask")})[0])
            worst = max(worst, float((ref - got).abs().max()))
            agree += int((ref.argmax(-1) == got.argmax(-1)).sum())
            n += len(ref)
    return {"max_abs_diff": worst, "argmax_agreement": agree / n if n else 1.0, "examples": n,
            "onnxruntime": ort.__version__, "size_mb": round(onnx_path.stat().st_size / 1e6, 4)}


def write_parity(result: dict, tolerance: float, path: Path) -> dict:
    result = {**result, "tolerance": tolerance, "passed": result["max_abs_diff"] <= tolerance}
    path.write_text(json.dumps(result, indent=2))
    return result
