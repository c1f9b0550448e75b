"""The report's MoE health: per phase, max/mean expert load over the steps, the load share per expert, warnings."""

from __future__ import annotations

from pathlib import Path

from trainforge.report.html import esc, fig_tag, pyplot, read_json, table

MOE_HEALTH_FILE = "moe_health.json"  # train/moe.py writes it (the same name; this module imports no torch)


def moe_health(model_dir: Path) -> str:
    """HTML for model_dir/moe_health.json; "" when the model is dense (no file)."""
    phases = read_json(model_dir / MOE_HEALTH_FILE)
    if not phases:
        return ""
    return "".join(_phase(name, ph) for name, ph in phases.items())


def _phase(name: str, ph: dict) -> str:
    hist = ph.get("history") or []
    if not hist:
        return ""
    plt = pyplot()
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(9.5, 3.0), gridspec_kw={"width_ratios": [3, 2]})
    steps = [h["step"] for h in hist]
    window = max(1, len(hist) // 50)
    for pos, layer in enumerate(ph["layers"]):
        ys = [h["max_mean"][pos] for h in hist]
        smooth = [sum(ys[max(0, i - window + 1): i + 1]) / len(ys[max(0, i - window + 1): i + 1]) for i in range(len(ys))]
        ax.plot(steps, smooth, lw=1.2, label=f"layer {layer}")
    ax.axhline(1.3, color="#999", ls="--", lw=0.8)
    ax.set_xlabel("step")
    ax.set_ylabel(f"max / mean expert load (mean of {window})")
    ax.legend(fontsize=7, loc="upper right")
    share = ph["load_share"]
    im = ax2.imshow(share, aspect="auto", cmap="viridis", vmin=0)
    ax2.set_xlabel("expert")
    ax2.set_ylabel("MoE layer")
    ax2.set_yticks(range(len(ph["layers"])), [str(layer) for layer in ph["layers"]])
    ax2.set_title("share of routed tokens", fontsize=9)
    fig.colorbar(im, ax=ax2)
    last = hist[-1]
    balancing = (f"auxiliary-loss-free bias update γ={ph['bias_update_gamma']:g}" if ph.get("bias_update_gamma")
                 else "no bias update")
    if ph.get("aux_loss_weight"):
        balancing += f", balance loss × {ph['aux_loss_weight']:g}"
    rows = [[layer, f"{last['max_mean'][pos]:.2f}", f"{last['entropy'][pos]:.3f}", last["idle"][pos],
             f"{min(share[pos]):.3f} – {max(share[pos]):.3f}"] for pos, layer in enumerate(ph["layers"])]
    warn = ""
    if ph.get("warnings"):
        shown = ph["warnings"][:10]
        more = f" (and {len(ph['warnings']) - len(shown)} more)" if len(ph["warnings"]) > len(shown) else ""
        warn = ("<p><b>Warning:</b> " + "<br>".join(esc(w) for w in shown) + esc(more)
                + " — raise moe.bias_update_gamma or moe.aux_loss_alpha.</p>")
    return (f"<h4>MoE health ({esc(name)})</h4><p>{ph['experts']} routed experts, top-{ph['top_k']}; {esc(balancing)}. "
            f"A uniform load is max/mean 1.0 (the dashed line is the 1.3 target); uniform routing entropy would be "
            f"ln {ph['experts']}.</p>" + fig_tag(fig, f"MoE health {name}")
            + table(["layer", "max/mean (last step)", "router entropy", f"idle ≥ {ph['idle_window']} steps",
                     "load share min – max"], rows) + warn)
