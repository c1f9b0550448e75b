"""INT8 linear layers: one stored form, two runtime kernels.

Stored form (what goes to disk, no pickle): every nn.Linear weight W (out, in) becomes
    weight        int8  (out, in)   q = round(W / scale), clamped to [-127, 127]
    weight_scale  fp32  (out,)      scale = max|W[row]| / 127   (symmetric, one scale per output channel)
    bias          fp32  (out,)      unchanged
in `model.int8.safetensors` beside config.json, plus `trainforge_compression.json` naming the method.
The file is deliberately not called model.safetensors: a plain `from_pretrained` would otherwise
cast the int8 codes to float without their scales and return a silently broken model; with this
name it fails loudly and `trainforge.compress.load.load_variant` is the way in.

Runtime kernels built from that form:
- dynamic: torch.ao's DynamicQuantizedLinear (fbgemm/onednn). Activations are quantised per batch,
  the matmul runs in int8 — the CPU speedup for encoders. We use PyTorch's built-in kernel, not
  torchao: measured here (torch 2.13, torchao 0.18, eager, 1 thread, quickstart BERT, batch 32)
  torchao's Int8DynamicActivationInt8Weight ran at 0.36x of fp32 and its weight-only config at 0.69x,
  while torch.ao's dynamic linear ran at 1.21x. torchao's CPU speed needs torch.compile.
- weight-only: activations stay float; each call widens the int8 codes and applies the scales
  just before the matmul, so weights rest in memory (and travel) at 1 byte each and there is no
  activation-quantisation error — the usual choice for causal LMs, whose quality is sensitive to
  activation outliers. It saves memory, not time, on this CPU: torch's fused
  `aten._weight_int8pack_mm` measured 64x slower than fp32 for a (4096x128)·(128x512) matmul
  (5x slower in bf16, 20x at one token), so we dequantise-then-matmul (1.1x the fp32 time).
"""

from __future__ import annotations

import contextlib
import copy
import warnings

import torch
from torch import nn

# Every nn.Linear is quantised, the classification head included: its few output channels cost
# nothing in accuracy here, and one rule is easier to reason about than a skip list.


def quantize_weight(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-output-channel int8: returns (int8 codes (out, in), fp32 scales (out,))."""
    w = weight.detach().float()
    scale = w.abs().amax(dim=1).clamp(min=1e-12) / 127.0
    codes = torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return codes, scale


class Int8WeightOnlyLinear(nn.Module):
    """y = x @ (codes * scale).T + bias; between calls only the int8 codes and scales are held."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("weight", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("weight_scale", torch.ones(out_features))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> "Int8WeightOnlyLinear":
        mod = cls(linear.in_features, linear.out_features, linear.bias is not None)
        mod.weight, mod.weight_scale = quantize_weight(linear.weight)
        if linear.bias is not None:
            mod.bias = nn.Parameter(linear.bias.detach().float().clone(), requires_grad=False)
        return mod

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight.to(x.dtype) * self.weight_scale.to(x.dtype)[:, None]  # (out, in), lives for this call only
        return nn.functional.linear(x, weight, None if self.bias is None else self.bias.to(x.dtype))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 weight, per-channel scale"


def dynamic_from_weight_only(mod: Int8WeightOnlyLinear) -> nn.Module:
    """The same int8 codes and scales packed into torch.ao's dynamic-quantised linear."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantizedLinear

    with warnings.catch_warnings():
        # torch 2.13 marks quint/qint tensors deprecated (pytorch#184982); the fbgemm kernel is
        # still the fastest int8 CPU path here, so we use it and silence the notice.
        warnings.simplefilter("ignore")
        qweight = torch._make_per_channel_quantized_tensor(
            mod.weight, mod.weight_scale.double(), torch.zeros(mod.out_features, dtype=torch.long), 0
        )
        out = DynamicQuantizedLinear(mod.in_features, mod.out_features, bias_=mod.bias is not None, dtype=torch.qint8)
        out.set_weight_bias(qweight, None if mod.bias is None else mod.bias.detach().float())
    return out


def linear_names(model: nn.Module) -> list[str]:
    return [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]


def _replace(model: nn.Module, names: list[str], make) -> nn.Module:
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, make(getattr(parent, child)))
    return model


def to_weight_only_int8(model: nn.Module) -> nn.Module:
    """A copy of `model` with every nn.Linear replaced by Int8WeightOnlyLinear (the stored form)."""
    model = copy.deepcopy(model).eval()
    return _replace(model, linear_names(model), Int8WeightOnlyLinear.from_linear)


INT8_KERNELS = ("fbgemm", "onednn")
"""torch's dynamic-INT8 kernel libraries for x86. The weights are packed for one of them when the
model is built (the packed form remembers which), so the choice is made once, at packing time.
fbgemm is torch's default; onednn uses the CPU's int8 matrix units (AVX512-VNNI, AMX) where it has
them — measured on this machine's AMX CPU, quickstart Llama, batch 32, 1 thread: onednn 1.38x of
fp32 vs fbgemm 1.23x."""


def available_kernels() -> list[str]:
    return [k for k in INT8_KERNELS if k in torch.backends.quantized.supported_engines]


@contextlib.contextmanager
def packing_kernel(kernel: str | None):
    """Pack quantised weights for `kernel` (None: torch's current engine)."""
    before = torch.backends.quantized.engine
    if kernel is not None:
        torch.backends.quantized.engine = kernel
    try:
        yield
    finally:
        torch.backends.quantized.engine = before


def to_dynamic_int8(weight_only: nn.Module, kernel: str | None = None) -> nn.Module:
    """Swap each Int8WeightOnlyLinear of a stored-form model for a dynamic-quantised linear packed for `kernel`."""
    names = [n for n, m in weight_only.named_modules() if isinstance(m, Int8WeightOnlyLinear)]
    model = copy.deepcopy(weight_only)
    with packing_kernel(kernel):
        return _replace(model, names, dynamic_from_weight_only)


def int8_state_dict(weight_only: nn.Module) -> dict[str, torch.Tensor]:
    """Tensors of the stored form, contiguous and unshared (safetensors refuses aliases)."""
    return {k: v.detach().contiguous().clone() for k, v in weight_only.state_dict().items()}


def weights_outside_linears(model: nn.Module) -> dict | None:
    """Weight matrices INT8 (and magnitude pruning) leave as they are, because they are not nn.Linear layers: a
    mixture-of-experts model's fused 3-D expert weights (transformers 5 stores all E experts of a layer in one
    (E, out, in) parameter, which torch.ao's dynamic linear cannot take) and its routers (fp32 by design: a
    rounding error there changes which experts are chosen). None when every weight matrix is in a Linear
    (embeddings aside). Otherwise {"names", "parameters", "share", "reason"} for the variant's metadata."""
    owned = {id(m.weight) for m in model.modules() if isinstance(m, (nn.Linear, nn.Embedding, Int8WeightOnlyLinear))}
    every = {id(p): (n, p) for n, p in model.named_parameters()}
    left = [(n, p) for i, (n, p) in every.items() if p.ndim >= 2 and i not in owned]
    if not left:
        return None
    total = sum(p.numel() for _, p in every.values())
    n_left = sum(p.numel() for _, p in left)
    kinds = sorted({n.rsplit(".", 1)[-1] if p.ndim == 3 else n.rsplit(".", 2)[-2] + "." + n.rsplit(".", 1)[-1]
                    for n, p in left})
    return {"names": kinds, "parameters": n_left, "share": round(n_left / total, 4),
            "reason": "not nn.Linear layers (fused 3-D expert weights, routers): stored and run in float"}


def linear_weight_bytes(model: nn.Module) -> int:
    """Bytes held by linear-layer weights (and int8 scales): what INT8 is meant to shrink."""
    total = 0
    for m in model.modules():
        if isinstance(m, nn.Linear):
            total += m.weight.numel() * m.weight.element_size()
        elif isinstance(m, Int8WeightOnlyLinear):
            total += m.weight.numel() * m.weight.element_size() + m.weight_scale.numel() * 4
    return total
