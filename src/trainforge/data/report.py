"""The report's data section: the funnel (table + chart), drops by reason with sampled examples, dedup details."""

from __future__ import annotations

from pathlib import Path

from trainforge.data.label_issues import report_fragment as label_issues_fragment
from trainforge.report.html import esc, fig_tag, pyplot, read_json, table


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
        + " · ".join(f"<code>{esc(t[:90])}</code>" for t in texts) + "</li>"
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
        + _class_table(s.get("labels") or {})
        + fig_tag(_funnel_chart(s), "data funnel")
        + "".join(f"<p class='muted'>{esc(d)}</p>" for d in details)
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
