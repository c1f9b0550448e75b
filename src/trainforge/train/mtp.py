"""Multi-token prediction (DeepSeek-V3 §2.2): D sequential modules predict the tokens after the next one.

    main model:  tokens t_0 … t_{T-1} ─► blocks ─► h⁰ (last block's output) ─► norm ─► head ─► t_{i+1}
    depth k=1…D: h'ᵏ_i = W_k [RMSNorm(hᵏ⁻¹_i) ; RMSNorm(Emb(t_{i+k}))]       (2H → H)
                 hᵏ    = one transformer block (the family's own, causal, positions 0 … T-k-1)
                 logits = head(norm(hᵏ_i)) predict t_{i+k+1}                (Emb and head shared with the model)
    loss = next-token loss + λ/D · Σ_k  CEᵏ

Each depth keeps the causal chain whole (hᵏ is built from hᵏ⁻¹, not from the main model alone), which is
V3's difference from parallel-heads MTP. The modules hang on the model as `model.mtp`, so the loop trains,
checkpoints and resumes them like any parameter; `detach` drops them before export, so the saved model is a
plain transformers causal LM whose next-token logits are exactly those of the trained one. Their
summed cross-entropy is divided like the task's (train/loop.py Weights.tokens): accumulation and DDP agree.
"""

from __future__ import annotations

import torch
from torch import nn

from trainforge.models.families import backbone, family_of

ATTRIBUTE = "mtp"


class MtpDepth(nn.Module):
    def __init__(self, config, block_class, norm_class, layer_idx: int):
        super().__init__()
        hidden, eps = config.hidden_size, getattr(config, "rms_norm_eps", 1e-6)
        self.hnorm, self.enorm = norm_class(hidden, eps=eps), norm_class(hidden, eps=eps)
        self.proj = nn.Linear(2 * hidden, hidden, bias=False)
        self.block = block_class(config, layer_idx)
        self.norm = norm_class(hidden, eps=eps)  # before the shared head, as the main model's final norm


class MultiTokenPrediction(nn.Module):
    def __init__(self, model, depth: int):
        super().__init__()
        config = model.config
        blocks = family_of(model).blocks_of(model)
        norm_class = type(backbone(model).norm)
        self.depths = nn.ModuleList(MtpDepth(config, type(blocks[-1]), norm_class, len(blocks) + k) for k in range(depth))
        self.apply(model._init_weights)  # transformers' own initialisation (fused experts start as torch.empty)

    def loss_sum(self, model, h: torch.Tensor, input_ids: torch.Tensor, labels: torch.Tensor,
                 attention_mask: torch.Tensor | None) -> torch.Tensor:
        """Σ over depths of the summed cross-entropy of t_{i+k+1}; `h` is the last block's output (B, T, H)."""
        from transformers.masking_utils import create_causal_mask

        embed, head, base = model.get_input_embeddings(), model.get_output_embeddings(), backbone(model)
        total = h[:0].sum().float()
        t = input_ids.shape[1]
        for k, depth in enumerate(self.depths, start=1):
            if t - k < 2:
                break
            n = t - k  # positions i = 0 … T-k-1 combine h_i and the embedding of t_{i+k}
            x = depth.proj(torch.cat([depth.hnorm(h[:, :n]), depth.enorm(embed(input_ids[:, k:]))], dim=-1))
            positions = torch.arange(n, device=x.device).unsqueeze(0)
            mask = attention_mask[:, k:] if attention_mask is not None else None
            causal = create_causal_mask(config=model.config, inputs_embeds=x, attention_mask=mask, cache=None,
                                        position_ids=positions)
            out = depth.block(x, attention_mask=causal, position_ids=positions,
                              position_embeddings=base.rotary_emb(x, positions))
            h = out[0] if isinstance(out, tuple) else out
            logits = head(depth.norm(h[:, :-1])).float()  # position i predicts t_{i+k+1}
            total = total + nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                        labels[:, k + 1:].reshape(-1).to(logits.device),
                                                        ignore_index=-100, reduction="sum")
        return total


def attach(model, depth: int) -> MultiTokenPrediction:
    """Hang D MTP modules on `model` (as model.mtp): the loop's optimizer, checkpoints and resume then cover them."""
    mtp = MultiTokenPrediction(model, depth)
    setattr(model, ATTRIBUTE, mtp.to(next(model.parameters()).device))
    return mtp


def detach(model) -> None:
    """Drop the MTP modules before export: the saved model is the plain causal LM."""
    if hasattr(model, ATTRIBUTE):
        delattr(model, ATTRIBUTE)


def loss_fn(base, weight: float):
    """`base(net, batch, weights)` + weight/D × the MTP modules' summed cross-entropy ÷ weights.tokens."""
    from trainforge.train.callbacks import unwrap

    def loss(net, batch, weights):
        model = unwrap(net)
        while hasattr(model, "get_base_model") and not hasattr(model, ATTRIBUTE):  # peft
            model = model.get_base_model()
        mtp = getattr(model, ATTRIBUTE)
        last = family_of(model).blocks_of(model)[-1]
        seen = {}
        handle = last.register_forward_hook(lambda m, a, out: seen.__setitem__("h", out[0] if isinstance(out, tuple) else out))
        try:
            main = base(net, batch, weights)
        finally:
            handle.remove()
        extra = mtp.loss_sum(model, seen["h"], batch["input_ids"], batch["labels"], batch.get("attention_mask"))
        return main + weight / len(mtp.depths) * extra / weights.tokens

    return loss
