"""The report's training section: pretraining phases (LM losses) and the fine-tuning curves."""

from __future__ import annotations

from pathlib import Path

from trainforge.report.html import esc, fig_tag, pyplot, read_json, table


def _smooth(ys: list[float], window: int) -> list[float]:
    return [sum(ys[max(0, i - window + 1): i + 1]) / len(ys[max(0, i - window + 1): i + 1]) for i in range(len(ys))]


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
    return ("<h3>Pretraining (causal LM)</h3>"
            f"<p>{st['parameters'] / 1e6:.2f}M parameters.</p>"
            + table(["phase", "steps", "tokens", "seconds", "tokens/s", "best val LM loss"], rows) + note)


def training(run_dir: Path) -> str | None:
    st = read_json(run_dir / "model" / "trainer_state.json") or read_json(run_dir / "adapter" / "trainer_state.json")
    pre = pretraining(run_dir)
    if not st:
        return f"<h2>Training</h2>{pre}" if pre else None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 3.2))
    hist = st["log_history"]
    window = max(1, len(hist) // 50)
    xs, ys = [h["step"] for h in hist], [h["loss"] for h in hist]
    ax.plot(xs, ys, color="#c6d3e6", lw=0.8, label="train loss")
    ax.plot(xs, _smooth(ys, window), color="#4e79a7", lw=1.6, label=f"train loss (mean of {window})")
    ev = st.get("eval_history") or []
    if ev:
        ax.plot([e["step"] for e in ev], [e["val_loss"] for e in ev], "o-", color="#e15759", label="val loss")
        if "val_accuracy" in ev[0]:
            ax2 = ax.twinx()
            ax2.plot([e["step"] for e in ev], [e["val_accuracy"] for e in ev], "s--", color="#59a14f", label="val accuracy")
            ax2.set_ylabel("val accuracy")
            ax2.legend(loc="center right")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend(loc="upper right")
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
    )
