"""The report's compression section: every variant beside the original, its gate verdict, the candidate."""

from __future__ import annotations

from pathlib import Path

from trainforge.report.html import esc, read_json, table


def _f(v, fmt: str = ".4f") -> str:
    return format(v, fmt) if isinstance(v, (int, float)) else "—"


def _slower_at(gate: dict, variant: dict) -> list[int]:
    """Batch sizes where a variant is slower than the original: from gates.json, or its measured speedups."""
    if "slower_at" in gate:
        return list(gate["slower_at"])
    return [b for b in (1, 32) if isinstance(variant.get(f"speedup_b{b}"), (int, float)) and variant[f"speedup_b{b}"] < 1]


def compression(run_dir: Path) -> str | None:
    out = Path(run_dir) / "compress"
    gates = read_json(out / "gates.json")
    measured = read_json(out / "measurements.json")
    if gates is None or measured is None:
        return None
    candidate = read_json(out / "candidate.json") or {}
    verdicts = {g["name"]: g for g in gates}
    metric = measured.get("metric", "accuracy")
    parts = [f"<h2>Compression ({esc(measured.get('split', 'test'))} split)</h2>"]
    by_name = {v["name"]: v for v in measured["variants"]}
    if candidate.get("name"):
        cand = by_name.get(candidate["name"], {})
        gate = verdicts.get(candidate["name"], {})
        slower = _slower_at(gate, cand)
        cls = "warn" if slower else "ok"
        warning = (f" <b>Slower than the original at batch {' and '.join(map(str, slower))}</b>: it speeds up "
                   f"batched work only." if slower else "")
        parts.append(f"<div class='verdict {cls}'>Deploy candidate: <b>{esc(candidate['name'])}</b> "
                     f"(<code>{esc(candidate['path'])}</code>) — {esc(candidate.get('reason', ''))}: "
                     f"{_f(cand.get('speedup_b1'), '.2f')}x at batch 1, {_f(cand.get('speedup_b32'), '.2f')}x at batch 32, "
                     f"{metric} {_f(0.0 - gate['metric_drop'] + 0.0 if 'metric_drop' in gate else None, '+.4f')} vs the original.{warning}</div>")
    else:
        parts.append("<div class='verdict bad'>No variant passed its gates: the original model stays the one "
                     "registered and served.</div>")
    g = measured.get("gates", {})
    budgets = [f"{metric} drop ≤ {_f(g.get('max_metric_drop'))}"]
    if g.get("min_speedup_b1") is not None:
        budgets.append(f"speedup at batch 1 ≥ {g['min_speedup_b1']:.2f}x")
    if g.get("min_speedup_b32") is not None:
        budgets.append(f"speedup at batch 32 ≥ {g['min_speedup_b32']:.2f}x")
    if g.get("max_size_mb") is not None:
        budgets.append(f"size ≤ {g['max_size_mb']:.2f} MB")
    if g.get("min_speedup_b1") is None:
        budgets.append("no gate at batch 1 (compress.gates.min_speedup_b1)")
    parts.append(f"<p class='muted'>Gates: {', '.join(budgets)}. Latency: "
                 f"{measured.get('threads')} torch thread(s), every model timed in turn on the same batches "
                 f"(torch {esc(measured.get('torch', '?'))}, quantized engine {esc(measured.get('quantized_engine', '?'))}).</p>")
    rows = []
    for v in measured["variants"]:
        gate = verdicts.get(v["name"])
        slower = _slower_at(gate or {}, v)
        verdict = "<span class='muted'>reference</span>" if gate is None else (
            ("<span class='ok'>pass</span>" if gate["passed"] else "<span class='bad'>fail</span>")
            + (f" <span class='warn'>slower at batch {' and '.join(map(str, slower))}</span>" if slower else ""))
        rows.append([v["name"], verdict, _f(v["metrics"].get(metric)), _f(gate["metric_drop"], "+.4f") if gate else "—",
                     _f(v.get("speedup_b1", 1.0), ".2f") + "x", _f(v.get("speedup_b32", 1.0), ".2f") + "x",
                     f"{_f(v['p50_b1_ms'], '.2f')} / {_f(v['p95_b1_ms'], '.2f')}",
                     f"{_f(v['p50_b32_ms'], '.1f')} / {_f(v['p95_b32_ms'], '.1f')}",
                     _f(v["throughput_b32"], ",.0f"), _f(v["size_mb"], ".2f"), _f(v["linear_mb"], ".2f"), f"{v['params']:,}"])
    parts.append(table([ "variant", "gate", metric, "drop", "speedup b1", "speedup b32", "p50/p95 b1 ms",
                         "p50/p95 b32 ms", "ex/s b32", "size MB", "linear MB", "params"], rows))
    failed = [gt for gt in gates if not gt["passed"]]
    if failed:
        parts.append("<p>Failed: " + "; ".join(f"<b>{esc(gt['name'])}</b>: {esc(', '.join(gt['reasons']))}" for gt in failed) + "</p>")
    slow = [(gt["name"], _slower_at(gt, by_name.get(gt["name"], {}))) for gt in gates]
    slow = [(n, b) for n, b in slow if b]
    if slow:
        parts.append("<p class='warn'>Slower than the original: " + "; ".join(
            f"{esc(n)} at batch {' and '.join(map(str, b))}" for n, b in slow) + ".</p>")
    notes = []
    for v in measured["variants"]:
        if "sparsity" in v:
            notes.append(f"{esc(v['name'])}: measured sparsity {v['sparsity']:.3f} of block linear weights "
                         f"(dense storage and kernels: zeros cost the same bytes and time)")
        if "params_after" in v:
            notes.append(f"{esc(v['name'])}: {v['params_before']:,} → {v['params_after']:,} parameters")
        if "student_layers" in v:
            notes.append(f"{esc(v['name'])}: {v['student_layers']}-layer student from teacher layers {v['teacher_layers']}, {v['steps']} steps")
    if notes:
        parts.append("<ul>" + "".join(f"<li>{n}</li>" for n in notes) + "</ul>")
    onnx = read_json(out / "onnx" / "parity.json")
    if onnx:
        cls = "ok" if onnx["passed"] else "bad"
        parts.append(f"<p>ONNX (<code>compress/onnx/model.onnx</code>, {onnx['size_mb']:.2f} MB): onnxruntime "
                     f"{esc(onnx['onnxruntime'])} vs PyTorch max |Δlogit| <span class='{cls}'>{onnx['max_abs_diff']:.2e}</span> "
                     f"(tolerance {onnx['tolerance']:.0e}), argmax agreement {onnx['argmax_agreement']:.3f} on {onnx['examples']} examples.</p>")
    return "".join(parts)
