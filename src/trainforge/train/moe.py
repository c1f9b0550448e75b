"""Mixture-of-experts training: load balancing that trains, and the routers' health.

    forward hooks on every router (models/moe.py) ─┬─► this step's tokens per expert, router entropy
                                                   └─► with an auxiliary loss: the router logits, with grad
    loss  += alpha × DeepSeek-V3's sequence-wise balance loss       (sigmoid routers: deepseek_v3)
          += coef  × the family's own load_balancing_loss_func      (softmax routers: Mixtral, Qwen-MoE)
    after each optimizer step (a train/callbacks.py callback, on every rank):
          counts summed over the ranks (all_reduce) = the global batch's
          → bias_i += γ · sign(mean load − load_i)       (auxiliary-loss-free balancing, DeepSeek-V3 §2.1.2)
          → health per MoE layer: load share, max/mean ratio, router entropy, experts idle for N steps
            (logged to MLflow as <stage>.moe.*; kept for the report; a warning when one idles too long)
    checkpoints: the biases, idle counters and history (the loop itself saves trainable parameters only)

The bias is a buffer of the router (`e_score_correction_bias`): it shifts which experts are chosen, never
the weights a chosen expert gets, so it needs no gradient and `save_pretrained` writes it with the model.
"""

from __future__ import annotations

import importlib

import torch

from trainforge.console import console
from trainforge.models.families import family_of
from trainforge.models.moe import experts_and_top_k, routers
from trainforge.train.callbacks import unwrap
from trainforge.train.config import MoeConfig

from trainforge.train.moe_report import MOE_HEALTH_FILE  # noqa: F401 (beside a MoE model: `MoeBalancer.finish` per phase)


def sequence_balance_loss(router_logits: torch.Tensor, top_k_index: torch.Tensor, n_experts: int, top_k: int,
                          batch_size: int, mask: torch.Tensor | None = None) -> torch.Tensor:
    """DeepSeek-V3's sequence-wise balance loss (eqs. 17-20) of one MoE layer, averaged over the sequences:

        f_i = N_r / (K_r T) · Σ_t 1[token t routed to i]     P_i = 1/T · Σ_t s'_{i,t},  s' = s / Σ_j s_j
        L   = Σ_i f_i P_i        (s: sigmoid scores; alpha is applied by the caller)

    router_logits (B·T, E), top_k_index (B·T, K); mask (B, T) leaves padding out of T."""
    scores = router_logits.float().sigmoid().view(batch_size, -1, n_experts)  # B, T, E
    normalised = scores / scores.sum(-1, keepdim=True)
    chosen = torch.nn.functional.one_hot(top_k_index.view(batch_size, -1, top_k), n_experts).sum(-2).float()  # B, T, E
    m = torch.ones_like(scores[..., :1]) if mask is None else mask.view(batch_size, -1, 1).to(scores.dtype)
    t = m.sum(1).clamp(min=1)  # B, 1
    f = n_experts / (top_k * t) * (chosen * m).sum(1)  # B, E
    p = (normalised * m).sum(1) / t
    return (f * p).sum(-1).mean()


def _in_backward() -> bool:
    """True while autograd runs backward: gradient checkpointing recomputes the routers then, not a new forward."""
    current = getattr(torch._C, "_current_graph_task_id", None)
    return current is not None and current() != -1


class MoeBalancer:
    """A fit() callback (train/callbacks.py) for one MoE model: balancing, health metrics, their checkpoint state."""

    def __init__(self, model, cfg: MoeConfig, select: tuple[str, bool] = ("val_loss", False), is_main: bool = True):
        self.family = family_of(model)
        self.cfg, self.select, self.is_main = cfg, select, is_main
        self.routers = routers(model, self.family)
        self.n_experts, self.top_k = experts_and_top_k(unwrap(model).config, self.family)
        self.uses_bias = self.family.moe.balancing == "bias"
        n_layers = len(self.routers)
        self.counts = torch.zeros(n_layers, self.n_experts, dtype=torch.float64)  # this step, this rank
        self.entropy = torch.zeros(n_layers, 2, dtype=torch.float64)  # Σ per-token entropy, tokens
        self.idle_steps = torch.zeros(n_layers, self.n_experts, dtype=torch.long)
        self.total_load = torch.zeros(n_layers, self.n_experts, dtype=torch.float64)
        self.history: list[dict] = []
        self.warnings: list[str] = []
        self.best_value, self.best_bias = None, None
        self.live: dict[int, torch.nn.Module] = {}  # the router that ran (FSDP trains a copy of the model)
        self.pending: dict[int, torch.Tensor] = {}  # restored biases not yet written into `live` routers
        self.captured: list | None = None  # (layer position, logits, indices) while an auxiliary loss wants them
        self.handles = [r.module.register_forward_hook(_tap(self, pos)) for pos, r in enumerate(self.routers)]
        coef = cfg.router_aux_loss_coef
        if not self.uses_bias and coef is None:
            coef = float(getattr(unwrap(model).config, "router_aux_loss_coef", 0.0) or 0.0)
        self.aux_weight = cfg.aux_loss_alpha if self.uses_bias else (coef or 0.0)

    # ---------------------------------------------------------------- loss

    def loss_fn(self, base):
        """`base(net, batch, weights)` plus this model's balance loss (none when its weight is 0). The auxiliary
        term is a mean over the micro-batch, so it is scaled by the micro-batch's share of the rank's examples:
        accumulation and DDP then give one process's gradient, as for the task's loss (train/loop.py Weights)."""
        if not self.aux_weight:
            return base

        def loss(net, batch, weights):
            self.captured = []
            try:
                value = base(net, batch, weights)
                captured = self.captured
            finally:
                self.captured = None
            return value + weights.examples * self.aux_loss(captured, batch)

        return loss

    def aux_loss(self, captured: list, batch: dict) -> torch.Tensor:
        mask = batch.get("attention_mask")
        batch_size = batch["input_ids"].shape[0]
        logits = [lg for _, lg, _ in captured]
        if mask is not None and mask.numel() != logits[0].shape[0]:  # virtual tokens prepended: no mask fits
            mask = None
        if self.uses_bias:
            total = sum(sequence_balance_loss(lg, idx, self.n_experts, self.top_k, batch_size, mask) for _, lg, idx in captured)
            return self.aux_weight * total
        # the family's own loss (e.g. transformers.models.mixtral.modeling_mixtral.load_balancing_loss_func)
        own = importlib.import_module(type(unwrap(self.routers[0].module)).__module__).load_balancing_loss_func
        return self.aux_weight * own(tuple(logits), self.n_experts, self.top_k, mask)

    # ---------------------------------------------------------------- callback

    def on_step_end(self, step: int, model, optimizer) -> dict[str, float]:
        counts = self.counts
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(counts)  # every rank: the global batch's loads
        load = counts.detach().to("cpu", torch.float64)
        if self.uses_bias and self.cfg.bias_update_gamma > 0:
            delta = self.cfg.bias_update_gamma * torch.sign(load.mean(-1, keepdim=True) - load)
            with torch.no_grad():
                for pos, r in enumerate(self.routers):
                    bias = self.live.get(pos, r.module).e_score_correction_bias
                    bias.add_(delta[pos].to(bias.device, bias.dtype))
        logged = self._health(step, load)
        self.counts = torch.zeros_like(self.counts)
        self.entropy = torch.zeros_like(self.entropy)
        return logged

    def _health(self, step: int, load: torch.Tensor) -> dict[str, float]:
        ratio = load.max(-1).values / load.mean(-1).clamp(min=1e-12)
        entropy = (self.entropy[:, 0] / self.entropy[:, 1].clamp(min=1)).cpu()
        self.idle_steps = torch.where(load == 0, self.idle_steps + 1, torch.zeros_like(self.idle_steps))
        idle = (self.idle_steps >= self.cfg.idle_window).sum(-1)
        self.total_load += load
        newly_idle = self.idle_steps == self.cfg.idle_warn_steps
        for pos in newly_idle.any(-1).nonzero().flatten().tolist():
            experts = ", ".join(map(str, newly_idle[pos].nonzero().flatten().tolist()))
            text = (f"MoE layer {self.routers[pos].layer}: no token routed to expert(s) {experts} for "
                    f"{self.cfg.idle_warn_steps} steps (step {step})")
            self.warnings.append(text)
            if self.is_main:
                console.print(f"[yellow]          {text}; raise moe.bias_update_gamma or moe.aux_loss_alpha[/]")
        self.history.append({"step": step, "max_mean": [round(float(x), 4) for x in ratio],
                             "entropy": [round(float(x), 4) for x in entropy], "idle": [int(x) for x in idle]})
        share = load / load.sum(-1, keepdim=True).clamp(min=1e-12)
        logged = {"moe.max_mean": float(ratio.max()), "moe.idle_experts": float(idle.sum())}
        for pos, r in enumerate(self.routers):
            name = f"moe.layer{r.layer}"
            logged.update({f"{name}.max_mean": float(ratio[pos]), f"{name}.entropy": float(entropy[pos]),
                           f"{name}.idle": float(idle[pos])})
            logged.update({f"{name}.expert{e}.load": float(share[pos, e]) for e in range(self.n_experts)})
        return logged

    def on_evaluate(self, step: int, scores: dict[str, float]) -> None:
        """Keep the biases of the step the loop will call best (the same metric and rule), to restore with it."""
        name, higher = self.select
        value = scores.get(name)
        if value is None:
            return
        if self.best_value is None or (value > self.best_value if higher else value < self.best_value):
            self.best_value, self.best_bias = value, self.biases()

    def biases(self) -> list[torch.Tensor] | None:
        if not self.uses_bias:
            return None
        return [self.live.get(pos, r.module).e_score_correction_bias.detach().to("cpu", copy=True)
                for pos, r in enumerate(self.routers)]

    def state_dict(self) -> dict:
        return {"bias": self.biases(), "idle_steps": self.idle_steps.clone(), "total_load": self.total_load.clone(),
                "history": list(self.history), "warnings": list(self.warnings), "best_value": self.best_value,
                "best_bias": self.best_bias}

    def load_state_dict(self, state: dict) -> None:
        self.idle_steps, self.total_load = state["idle_steps"].clone(), state["total_load"].clone()
        self.history, self.warnings = list(state["history"]), list(state["warnings"])
        self.best_value, self.best_bias = state["best_value"], state["best_bias"]
        if state["bias"] is not None:
            self._write_biases(state["bias"])

    def _write_biases(self, biases: list[torch.Tensor]) -> None:
        with torch.no_grad():
            for pos, r in enumerate(self.routers):
                r.module.e_score_correction_bias.copy_(biases[pos])
                self.pending[pos] = biases[pos]  # and into the copy FSDP trains, at its first forward

    # ---------------------------------------------------------------- end

    def finish(self) -> dict:
        """Detach the hooks, put back the biases of the best step (the loop restores its weights), and return
        the health summary written beside the model (moe_health.json; the report's plot)."""
        for h in self.handles:
            h.remove()
        self.handles = []
        if self.best_bias is not None:
            self._write_biases(self.best_bias)
        total = self.total_load / self.total_load.sum(-1, keepdim=True).clamp(min=1e-12)
        return {
            "family": self.family.name, "balancing": self.family.moe.balancing, "experts": self.n_experts,
            "top_k": self.top_k, "layers": [r.layer for r in self.routers],
            "bias_update_gamma": self.cfg.bias_update_gamma if self.uses_bias else None,
            "aux_loss_weight": self.aux_weight, "idle_window": self.cfg.idle_window,
            "idle_warn_steps": self.cfg.idle_warn_steps, "history": self.history, "warnings": self.warnings,
            "load_share": [[round(float(x), 5) for x in row] for row in total],
            "final_bias": [[round(float(x), 5) for x in b] for b in (self.biases() or [])],
        }


def _tap(balancer: MoeBalancer, pos: int):
    """The forward hook of router `pos`: a closure, not a bound method, so a deep copy of the model (FSDP's) shares it."""

    def hook(module, args, output):
        if not module.training or _in_backward():
            return
        logits, _, indices = output
        balancer.live[pos] = module
        pending = balancer.pending.pop(pos, None)
        if pending is not None and module is not balancer.routers[pos].module:
            with torch.no_grad():
                module.e_score_correction_bias.copy_(pending)
        with torch.no_grad():
            if balancer.counts.device != indices.device:
                balancer.counts = balancer.counts.to(indices.device)
                balancer.entropy = balancer.entropy.to(indices.device)
            balancer.counts[pos] += torch.bincount(indices.reshape(-1), minlength=balancer.n_experts).to(torch.float64)
            if balancer.uses_bias:  # sigmoid scores, normalised over the experts
                s = logits.float().sigmoid()
                probs = s / s.sum(-1, keepdim=True)
            else:
                probs = logits.float().softmax(-1)
            ent = -(probs * probs.clamp(min=1e-20).log()).sum(-1)
            balancer.entropy[pos, 0] += ent.sum().double()
            balancer.entropy[pos, 1] += ent.numel()
        if balancer.captured is not None:
            balancer.captured.append((pos, logits, indices))

    return hook


# --------------------------------------------------------------------------- what the stages call


def balancer_for(model, cfg: MoeConfig, is_main: bool = True) -> MoeBalancer | None:
    """A balancer for a MoE model (the family registry says which are); None for a dense one."""
    family = family_of(model)
    if family.moe is None or not routers(model, family):
        return None
    return MoeBalancer(model, cfg, is_main=is_main)


def describe(balancer: MoeBalancer) -> str:
    if balancer.uses_bias:
        aux = f", sequence-wise balance loss × {balancer.aux_weight:g}" if balancer.aux_weight else ""
        return (f"MoE: {len(balancer.routers)} routed layers × {balancer.n_experts} experts (top-{balancer.top_k}); "
                f"auxiliary-loss-free bias update γ={balancer.cfg.bias_update_gamma:g}{aux}")
    aux = f"{balancer.family.name} load-balancing loss × {balancer.aux_weight:g}" if balancer.aux_weight else "no balance loss"
    return f"MoE: {len(balancer.routers)} routed layers × {balancer.n_experts} experts (top-{balancer.top_k}); {aux}"


def attach(model, cfg: MoeConfig, task, is_main: bool = True, base_factory=None) -> tuple[MoeBalancer | None, dict]:
    """(balancer, extra fit() keyword arguments) for `model`: none for a dense model. The balance loss wraps the
    loss fit would use otherwise: `base_factory(trained)` (e.g. train.lm_loss's objective) or the task's own."""
    balancer = balancer_for(model, cfg, is_main)
    if balancer is None:
        return None, {}
    kwargs: dict = {"callbacks": [balancer]}
    if balancer.aux_weight:
        kwargs["loss_fn_factory"] = lambda trained: balancer.loss_fn((base_factory(trained) if base_factory else None)
                                                                     or task.loss)
    elif base_factory is not None:
        kwargs["loss_fn_factory"] = base_factory
    if is_main:
        console.print(f"          {describe(balancer)}")
    return balancer, kwargs
