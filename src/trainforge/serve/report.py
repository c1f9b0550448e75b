"""The report's registration section: what the register stage put in the MLflow registry, and the drift
reference profile it registered with it (register/drift_profile.json, serve/drift.py) — the histograms
live traffic is compared against by `trainforge serve` and `trainforge monitor drift`."""

from __future__ import annotations

from pathlib import Path

from trainforge.paths import REGISTERED
from trainforge.report.html import esc, fig_tag, pyplot, read_json, table

PROFILE = "register/drift_profile.json"
TOP_CHARS_SHOWN = 20


def _profile_figure(profile: dict):
    plt = pyplot()
    h = profile["histograms"]
    panels = [p for p in ("length", "label", "cluster", "chars") if h.get(p)]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3.0), squeeze=False)
    for ax, name in zip(axes[0], panels):
        counts = h[name]
        total = sum(counts) or 1
        if name == "length":
            edges = [int(e) for e in profile["length_edges"]]
            ticks = [f"<{edges[0]}"] + [f"{a}" if b - 1 == a else f"{a}–{b - 1}" for a, b in zip(edges, edges[1:])] + [f"≥{edges[-1]}"] if edges else ["all"]
            title, xlabel = "text length (characters)", ""
        elif name == "label":
            ticks, title, xlabel = list(profile.get("labels") or []), "predicted label", ""
        elif name == "cluster":
            ticks, title, xlabel = [str(i) for i in range(len(counts))], "topic cluster (k-means)", "cluster"
        else:
            order = sorted(range(len(counts) - 1), key=lambda i: -counts[i])[:TOP_CHARS_SHOWN]
            ticks = [profile["char_vocab"][i] for i in order]
            counts = [counts[i] for i in order]
            title, xlabel = f"most frequent characters (top {len(order)})", ""
        ax.bar(range(len(counts)), [c / total for c in counts], color="#4e79a7")
        ax.set_xticks(range(len(ticks)), ticks, rotation=0 if name in ("chars", "cluster", "label") else 45,
                      ha="center" if name in ("chars", "cluster", "label") else "right", fontsize=8 if name != "chars" else 9)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("share")
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def registration(run_dir: Path) -> str | None:
    reg = read_json(run_dir / REGISTERED)
    profile = read_json(run_dir / PROFILE)
    if not reg and not profile:
        return None
    parts = ["<h2>Registration and drift reference</h2>"]
    if reg:
        parts.append(table(["registered model", "version", "alias", "source", "tracking URI"],
                           [[reg["name"], str(reg["version"]), "@" + str(reg["alias"]), reg.get("source", ""),
                             f"<code>{esc(reg.get('tracking_uri', ''))}</code>"]]))
    if profile and profile.get("histograms"):
        parts.append(f"<p class='muted'>Reference profile of {profile['n']:,} training texts ({esc(PROFILE)}), "
                     "registered with the model: live inputs are scored against these histograms (PSI, KL).</p>"
                     + fig_tag(_profile_figure(profile), "drift reference profile"))
    return "".join(parts)
