"""The report's data section: the funnel (table + chart), drops by reason with sampled examples, dedup details."""

from __future__ import annotations

from pathlib import Path

from trainforge.data.label_issues import report_fragment as label_issues_fragment
from trainforge.report.html import clip, esc, fig_tag, pyplot, read_json, table

SPLITS = ("train", "val", "test")


def _funnel_chart(stats: dict):
    plt = pyplot()
    names = list(stats["steps"])
    # documents entering the pipeline, then what each step lets through
    counts = [stats["read"]] + [stats["steps"][k]["docs_out"] for k in names]
    labels = ["read (all records)"] + [("readable" if k == "read" else k) for k in names] + ["kept"]
    counts.append(stats["kept"])
    fig, ax = plt.subplots(figsize=(7.5, 0.6 + 0.38 * len(labels)))
    widest = max(counts) or 1
    for y, (label, c) in enumerate(zip(labels, counts)):
        ax.barh(y, c, left=(widest - c) / 2, color="#59a14f" if label == "kept" else "#4e79a7")  # centred: a funnel
        ax.text(widest / 2, y, f"{c:,}", va="center", ha="center", color="white", fontsize=8, fontweight="bold")
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xticks([])
    for side in ("top", "right", "bottom"):
        ax.spines[side].set_visible(False)
    ax.set_title("documents through the data pipeline")
    return fig


def split_profile(run_dir: Path) -> dict[str, dict]:
    """{split: {"labels": Counter, "lengths": [characters per text]}} of the splits the data stage wrote."""
    import json
    from collections import Counter

    out = {}
    for split in SPLITS:
        path = run_dir / "data" / f"{split}.jsonl"
        if not path.is_file():
            continue
        labels, lengths = Counter(), []
        with path.open(encoding="utf-8") as f:
            for line in f:
                r = json.loads(line)
                if r.get("label") is not None:
                    labels[str(r["label"])] += 1
                lengths.append(len(r.get("text") or ""))
        out[split] = {"labels": labels, "lengths": lengths}
    return out


def _splits_figure(profile: dict[str, dict]):
    """Class balance per split (shares, counts on the bars) beside the text-length histogram of each split."""
    import numpy as np

    plt = pyplot()
    labels = sorted({lab for p in profile.values() for lab in p["labels"]})
    has_labels = bool(labels)
    fig, axes = plt.subplots(1, 1 + has_labels, figsize=(4.6 * (1 + has_labels), 3.3), squeeze=False)
    axes = axes[0]
    colours = {"train": "#4e79a7", "val": "#f28e2b", "test": "#59a14f"}
    if has_labels:
        ax = axes[0]
        names = list(profile)
        left = np.zeros(len(names))
        palette = plt.get_cmap("tab20")
        for k, lab in enumerate(labels[:20]):
            counts = np.array([profile[n]["labels"].get(lab, 0) for n in names], float)
            totals = np.array([max(1, sum(profile[n]["labels"].values())) for n in names], float)
            share = counts / totals
            ax.barh(names, share, left=left, color=palette(k % 20), label=lab)
            for y, (sh, c, lf) in enumerate(zip(share, counts, left)):
                if sh > 0.08:
                    ax.text(lf + sh / 2, y, f"{int(c):,}", ha="center", va="center", fontsize=8, color="white")
            left += share
        ax.set_xlim(0, 1)
        ax.invert_yaxis()
        ax.set_xlabel("share of the split")
        ax.set_title("class balance per split", fontsize=10)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=min(4, len(labels)), fontsize=8, frameon=False)
    ax = axes[-1]
    every = [x for p in profile.values() for x in p["lengths"]]
    if every:
        top = max(1, int(np.quantile(every, 0.99)))
        # whole characters: one bin per length while that is few bins, else 30 bins with integer edges
        bins = np.arange(-0.5, top + 1.5) if top <= 60 else np.unique(np.linspace(0, top, 31).round()) - 0.5
        for name, p in profile.items():
            ax.hist(np.clip(p["lengths"], 0, top), bins=bins, density=True, histtype="step", lw=1.6,
                    color=colours.get(name), label=f"{name} (median {int(np.median(p['lengths'])) if p['lengths'] else 0})")
        ax.set_xlabel(f"characters per text (the last bin holds everything ≥ {top:,})")
        ax.set_ylabel("density")
        ax.set_title("text length", fontsize=10)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=3, fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def data_funnel(run_dir: Path) -> str | None:
    s = read_json(run_dir / "data" / "stats.json")
    if not s:
        return None
    rows = []
    for step, st in s["steps"].items():
        reasons = st.get("quarantine_reasons") if step == "read" else st.get("dropped", {})
        mb_in = f"{st['bytes_in'] / 1e6:.2f}" if st.get("bytes_in") is not None else ""
        rows.append([step, f"{st['docs_in']:,}", f"{st['docs_out']:,}", mb_in, f"{st['bytes_out'] / 1e6:.2f}",
                     f"{st['seconds']:.2f}", ", ".join(f"{k}: {v:,}" for k, v in (reasons or {}).items())])
    dropped = sum(s["dropped"].values())
    check = s["read"] == s["kept"] + s["quarantined"] + dropped
    examples = "".join(
        f"<li><b>{esc(reason)}</b> ({s['dropped'].get(reason, 0):,}): "
        + " · ".join(f"<code>{clip(t, 90)}</code>" for t in texts) + "</li>"
        for reason, texts in s.get("examples", {}).items()
    )
    details = []
    norm = s["steps"].get("normalize", {})
    if norm.get("changed"):
        details.append("normalisation changed: " + ", ".join(f"{k} {v:,}" for k, v in norm["changed"].items())
                       + ("; PII masked: " + ", ".join(f"{k} {v:,}" for k, v in norm["pii_masked"].items()) if norm.get("pii_masked") else ""))
    bloom = s["steps"].get("dedup_exact", {}).get("bloom")
    if bloom:
        details.append(f"Bloom filter: {bloom['bytes']:,} bytes = {bloom['bytes'] / bloom['optimal_bytes']:.3f}× the optimum for "
                       f"{bloom['capacity']:,} keys at p = {bloom['fp_target']:.0e}; false-positive rate measured "
                       f"{bloom['fp_measured']:.2e} (expected {bloom['fp_expected']:.2e})")
    near = s["steps"].get("dedup_near")
    if near:
        details.append(f"near duplicates: Jaccard ≥ {near['threshold']}, {near['bands']} bands × {near['rows']} rows "
                       f"(P(candidate | J) " + ", ".join(f"{j}: {p:.3f}" for j, p in near["s_curve"].items())
                       + f"); {near['candidate_pairs']:,} candidate pairs, {near['confirmed_pairs']:,} confirmed, {near['clusters']:,} clusters")
    for step, st in s["steps"].items():  # a corpus-level filter's fitted threshold (summary(): threshold_<what>)
        for key, value in st.items():
            if key.startswith("threshold_"):
                details.append(f"{step.removeprefix('filter_')}: {key.removeprefix('threshold_')} cut at {value:,}")
    ooc = s.get("out_of_core")
    if ooc:  # data.max_memory: what the bounded run cost
        details.append(f"out of core: limit {ooc['max_memory'] / 2**20:,.0f} MiB, peak resident memory {ooc['peak_rss'] / 2**20:,.0f} MiB, "
                       f"{ooc['bytes_spilled'] / 2**20:,.1f} MiB spilled to disk in {ooc['chunks']:,} chunks; seconds by stage "
                       + ", ".join(f"{k} {v:.1f}" for k, v in ooc["seconds"].items())
                       + (f"; corpus threshold from {ooc['threshold_from']}" if ooc.get("threshold_from") else "")
                       + (f"; resumed after {', '.join(ooc['resumed_stages'])}" if ooc.get("resumed_stages") else ""))
    splits = s.get("splits", {})
    for step in ("augment", "balance"):  # training-split growth: what was added, beside the records read
        st = s["steps"].get(step)
        if st:
            extra = ", ".join(f"{k} {v}" for k, v in st.items() if k in ("method", "max_ratio", "per_class", "per_operation", "rejected", "skipped"))
            details.append(f"{step} (training split only): {st.get('added', 0):,} records added; {extra}")
    return (
        "<h2>Data</h2>"
        + table(["step", "docs in", "docs out", "MB in", "MB out", "seconds", "dropped / quarantined by reason"], rows)
        + f"<p class='{'ok' if check else 'bad'}'>read {s['read']:,} = kept {s['kept']:,} + quarantined {s['quarantined']:,} "
        f"+ dropped {dropped:,} {'✓' if check else '✗ does not reconcile'}"
        + (" · splits " + " / ".join(f"{k} {v:,}" for k, v in splits.items()) if splits else "") + "</p>"
        + fig_tag(_funnel_chart(s), "data funnel")
        + "".join(f"<p class='muted'>{esc(d)}</p>" for d in details)
        + _splits_section(run_dir, s.get("labels") or {})
        + (f"<p>Dropped documents, three sampled per reason (all in data/rejected/):</p><ul>{examples}</ul>" if examples else "")
        + label_issues_fragment(run_dir, s)
    )


def _class_table(labels: dict) -> str:
    """Class distribution per split: counts, shares, and the largest ÷ smallest class ratio."""
    names = sorted({str(k) for part in labels.values() for k in part})
    if not names or names == ["None"]:
        return ""
    rows = []
    for split, counts in labels.items():
        total = sum(counts.values()) or 1
        c = {str(k): v for k, v in counts.items()}
        present = [v for v in c.values() if v]
        ratio = f"{max(present) / min(present):.2f}" if present else ""
        rows.append([split] + [f"{c.get(n, 0):,} ({c.get(n, 0) / total:.1%})" for n in names] + [ratio])
    return "<p>Class distribution per split:</p>" + table(["split", *names, "largest ÷ smallest"], rows)


def _splits_section(run_dir: Path, labels: dict | None = None) -> str:
    """Class balance per split (counts, shares, largest ÷ smallest) and the text-length histogram."""
    profile = split_profile(run_dir)
    if not profile:
        return _class_table(labels or {})
    rows = []
    for name, p in profile.items():
        n = len(p["lengths"])
        total = sum(p["labels"].values())
        balance = ", ".join(f"{lab} {c / total:.1%}" for lab, c in sorted(p["labels"].items())) if total else "—"
        rows.append([name, f"{n:,}", balance])
    counts = _class_table(labels or {})
    return ("<h3>Splits: class balance and text length</h3>"
            + (counts or table(["split", "records", "labels (share)"], rows))
            + fig_tag(_splits_figure(profile), "class balance per split and text-length histogram"))
