"""The report's training section: pretraining phases (LM losses) and the fine-tuning curves."""

from __future__ import annotations

from pathlib import Path

from trainforge.report.html import esc, fig_tag, pyplot, read_json, table
from trainforge.train.moe_report import moe_health


def _smooth(ys: list[float], window: int) -> list[float]:
    return [sum(ys[max(0, i - window + 1): i + 1]) / len(ys[max(0, i - window + 1): i + 1]) for i in range(len(ys))]


PHASE_COLOURS = ("#4e79a7", "#f28e2b", "#59a14f", "#b07aa1")


def curves_figure(phases: list[tuple[str, list[dict], list[dict]]], train_label: str, title: str):
    """Train loss and validation on separate panels (their scales differ: a train loss that carries an LM
    term sits far above the classification val loss), legends below the axes, never over the curves.
    phases: (name, log_history, eval_history); later phases continue the step axis."""
    plt = pyplot()
    has_acc = any("val_accuracy" in e for _, _, ev in phases for e in ev)
    has_val = any(ev for _, _, ev in phases)
    n_panels = 1 + has_val + has_acc
    fig, axes = plt.subplots(1, n_panels, figsize=(4.2 * n_panels, 3.3), squeeze=False)
    axes = axes[0]
    offset = 0
    for k, (name, hist, ev) in enumerate(phases):
        colour = PHASE_COLOURS[k % len(PHASE_COLOURS)]
        suffix = f" ({name})" if len(phases) > 1 else ""
        if hist:
            xs, ys = [h["step"] + offset for h in hist], [h["loss"] for h in hist]
            window = max(1, len(hist) // 50)
            axes[0].plot(xs, ys, color=colour, alpha=0.25, lw=0.8)
            axes[0].plot(xs, _smooth(ys, window), color=colour, lw=1.6, label=f"{train_label}{suffix}, mean of {window}")
        if ev:
            xs = [e["step"] + offset for e in ev]
            axes[1].plot(xs, [e["val_loss"] for e in ev], "o-", color=colour, ms=4, label=f"val loss{suffix}")
            if has_acc and "val_accuracy" in ev[0]:
                axes[2].plot(xs, [e["val_accuracy"] for e in ev], "s-", color=colour, ms=4, label=f"val accuracy{suffix}")
        offset += max([h["step"] for h in hist] + [e["step"] for e in ev] + [0])
    names = [train_label, "validation loss", "validation accuracy"]
    for ax, name in zip(axes, names):
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def best_is_last(state: dict) -> bool:
    """Was the best validation score the last one measured (the curve may still be improving)?"""
    ev = state.get("eval_history") or []
    return len(ev) >= 1 and (state.get("best") or {}).get("step") == ev[-1]["step"]


def pretraining(run_dir: Path) -> str:
    st = read_json(run_dir / "pretrain" / "pretrain_state.json")
    if not st:
        return ""
    m = st.get("metrics", {})
    rows = [[name, ph["steps"], f"{ph['tokens']:,}", f"{ph['seconds']:.0f}", f"{ph['tokens_per_second']:,.0f}",
             f"{ph['best'].get('val_loss', float('nan')):.3f}"] for name, ph in st["phases"].items()]
    note = ""
    if "in_domain_val_loss_before" in m and "in_domain_val_loss_after" in m:
        note = (f"<p>In-domain LM loss on held-out reviews: {m['in_domain_val_loss_before']:.3f} after general pretraining → "
                f"{m['in_domain_val_loss_after']:.3f} after in-domain fine-tuning.</p>")
    phases = [(name, ph.get("log_history") or [], ph.get("eval_history") or []) for name, ph in st["phases"].items()]
    fig = fig_tag(curves_figure(phases, "train LM loss", "pretraining (causal LM); phases continue the step axis"),
                  "pretraining curves") if any(h for _, h, _ in phases) else ""
    last = [name for name, ph in st["phases"].items() if best_is_last(ph)]
    warn = (f"<p class='warn'>Best validation loss at the last evaluation in {esc(', '.join(last))}: the loss was still "
            f"falling, so more steps would likely lower it.</p>" if last else "")
    return ("<h3>Pretraining (causal LM)</h3>"
            f"<p>{st['parameters'] / 1e6:.2f}M parameters.</p>"
            + table(["phase", "steps", "tokens", "seconds", "tokens/s", "best val LM loss"], rows) + note + fig + warn
            + moe_health(run_dir / "pretrain"))


def training(run_dir: Path) -> str | None:
    st = read_json(run_dir / "model" / "trainer_state.json") or read_json(run_dir / "adapter" / "trainer_state.json")
    pre = pretraining(run_dir)
    if not st:
        return f"<h2>Training</h2>{pre}" if pre else None
    train_label = "train loss (incl. LM term)" if st.get("lm_loss") else "train loss"
    fig = curves_figure([("fine-tuning", st["log_history"], st.get("eval_history") or [])], train_label,
                        f"fine-tuning (method {st.get('method', 'full')})")
    best = st.get("best", {})
    best_text = ", ".join(f"{k.replace('_', ' ')} {v:.4f}" for k, v in best.items() if k != "step")
    extras = []
    if st.get("nonfinite_skipped"):
        extras.append(f"{st['nonfinite_skipped']} steps skipped for a non-finite loss")
    if st.get("stopped_early"):
        extras.append("stopped early")
    if st.get("grad_accum", 1) > 1:
        extras.append(f"micro-batch {st['micro_batch']} × {st['grad_accum']} accumulation")
    if st.get("lm_loss"):
        extras.append(f"the train loss includes {st['lm_loss']:g} × the next-token loss on the text (train.lm_loss)")
    hist = st.get("log_history") or []
    if st.get("task") == "dpo" and hist:  # the preference recipe: TRL's reward metrics at its last step
        d, last = st["dpo"], hist[-1]
        extras.append(f"DPO ({d['loss']}, β {d['beta']:g}) on {st['pairs']:,} pairs after {st['sft_steps']} SFT steps: "
                      f"last step rewards/margins {last['rewards/margins']:+.3f}, rewards/accuracies "
                      f"{last['rewards/accuracies']:.3f}, logps/chosen {last['logps/chosen']:.2f}, logps/rejected "
                      f"{last['logps/rejected']:.2f}")
    ens = st.get("ensemble")
    if ens:  # train.ensemble: the curves are member 1's; the model averages every member's probabilities
        alone = ", ".join(f"{m['best'].get('val_accuracy', float('nan')):.4f}" for m in ens["members"])
        extras.append(f"ensemble of {len(ens['members'])} (seeds {', '.join(str(m['seed']) for m in ens['members'])}; "
                      f"curves are the first's): val accuracy {ens['val_accuracy']:.4f}, members alone {alone}")
    return (
        f"<h2>Training</h2>{pre}<h3>Fine-tuning (method {esc(st.get('method', 'full'))})</h3>"
        f"<p>{st['parameters'] / 1e6:.2f}M parameters, {st['trainable_parameters']:,} trainable "
        f"({st['trainable_parameters'] / st['parameters']:.2%}); {st['steps']:,} steps in {st['train_seconds']:.0f}s, "
        f"{st['tokens_per_second']:,.0f} tokens/s; best at step {best.get('step')}: {esc(best_text)}"
        f"{'; ' + esc('; '.join(extras)) if extras else ''}.</p>"
        + fig_tag(fig, "training curves")
        + (f"<p class='warn'>The best validation score came at the last evaluation (step {best.get('step')}): the model "
           f"was still improving when training stopped — more steps or epochs may help "
           f"({len(st.get('eval_history') or [])} evaluations in all).</p>" if best_is_last(st) else "")
        + moe_health(run_dir / "model") + moe_health(run_dir / "adapter")
    )
