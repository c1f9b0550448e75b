"""Out-of-core curation: the same kept set, funnel and reasons as in memory; bounded memory; resume."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from trainforge.data import outofcore as O
from trainforge.data.config import DataConfig, DedupConfig, FilterSpec, LengthFilter, SourceConfig
from trainforge.data.io import read_jsonl, write_jsonl
from trainforge.data.stage import curate_sources
from trainforge.data.synthetic import planted_corpus


def _corpus(tmp_path: Path, n: int = 1200, seed: int = 5) -> Path:
    """Planted near copies and exact copies, shuffled so copies sit in other chunks than their originals;
    labels (with a few conflicting copies) and some blank and too-short records."""
    c = planted_corpus(n, seed=seed, dup_share=0.25)
    rng = np.random.default_rng(seed)
    rows = [{"text": t, "label": "pos" if i % 3 else "neg", "extra": i} for i, t in enumerate(c.texts)]
    rows += [{"text": rows[k]["text"], "label": rows[k]["label"]} for k in rng.choice(len(rows), 120, replace=False)]
    rows += [{"text": rows[k]["text"], "label": "other"} for k in rng.choice(len(rows), 10, replace=False)]  # conflicts
    rows += [{"text": "   "}, {"text": "短"}] * 5
    order = rng.permutation(len(rows))
    path = tmp_path / "in.jsonl"
    write_jsonl(path, [rows[i] for i in order])
    with open(path, "a", encoding="utf-8") as f:
        f.write("{not json\n")  # quarantined
    return path


def _cfg(path: Path, **dedup) -> DataConfig:
    return DataConfig(sources=[SourceConfig(path=str(path), label_field="label")],
                      filters=[FilterSpec(length=LengthFilter(min_chars=5)), FilterSpec(quality={"drop_percentile": 10})],
                      dedup=DedupConfig(**{"near": 0.8, **dedup}), decontaminate=None)


def _in_memory(cfg, out):
    cur, funnel = curate_sources(cfg, out, seed=0)
    return [r.to_json() for r in cur.records], funnel.stats(cur.read, len(cur.records), cur.quarantined)


def _out_of_core(cfg, out, budget, work=None):
    kept = []
    read, q, n, funnel, report = O.curate_out_of_core(cfg, out, 0, lambda rs, _f: (kept.extend(r.to_json() for r in rs), len(rs))[1],
                                                      budget, log=lambda m: None, work_dir=work)
    return kept, funnel.stats(read, n, q), report


def _counts(stats):
    return {name: {k: st.get(k) for k in ("docs_in", "docs_out", "bytes_in", "bytes_out", "dropped", "threshold_perplexity",
                                         "candidate_pairs", "confirmed_pairs", "clusters", "no_text")}
            for name, st in stats["steps"].items()}


@pytest.mark.parametrize("keep", ["first", "longest", "quality"])
def test_kept_set_funnel_and_rejects_equal_the_in_memory_path(tmp_path, keep):
    path = _corpus(tmp_path)
    cfg = _cfg(path, keep=keep)
    mem_kept, mem = _in_memory(cfg, tmp_path / "mem" / "data")
    budget = O.Budget(limit=1 << 30, chunk=20_000, partition=4_000)  # ~15 chunks, many partitions
    ooc_kept, ooc, report = _out_of_core(cfg, tmp_path / "ooc" / "data", budget)
    assert report["chunks"] > 10 and report["threshold_from"] == "exact"
    assert ooc_kept == mem_kept
    assert (ooc["read"], ooc["kept"], ooc["quarantined"], ooc["dropped"]) == (mem["read"], mem["kept"], mem["quarantined"], mem["dropped"])
    assert _counts(ooc) == _counts(mem)
    assert mem["dropped"]["near_duplicate"] > 50 and mem["dropped"]["exact_duplicate"] > 50 and mem["dropped"]["label_conflict"] > 0
    for reason in mem["dropped"]:
        a = read_jsonl(tmp_path / "mem" / "data" / "rejected" / f"{reason}.jsonl")
        b = read_jsonl(tmp_path / "ooc" / "data" / "rejected" / f"{reason}.jsonl")
        assert sorted(map(json.dumps, a)) == sorted(map(json.dumps, b)), reason
    assert read_jsonl(tmp_path / "ooc" / "data" / "quarantine" / "records.jsonl") == \
        read_jsonl(tmp_path / "mem" / "data" / "quarantine" / "records.jsonl")
    assert not (tmp_path / "ooc" / "data.work").exists()  # removed when the run ends


def test_a_killed_run_resumes_from_the_last_finished_stage(tmp_path, monkeypatch):
    path = _corpus(tmp_path, n=600)
    cfg = _cfg(path)
    budget = O.Budget(limit=1 << 30, chunk=20_000, partition=4_000)
    want, want_stats, _ = _out_of_core(cfg, tmp_path / "ref" / "data", budget)

    calls = []
    real_near = O._near

    def dies(*a, **k):
        calls.append(1)
        raise KeyboardInterrupt  # stopped during near dedup: scan, filters and exact are on disk

    monkeypatch.setattr(O, "_near", dies)
    with pytest.raises(KeyboardInterrupt):
        _out_of_core(cfg, tmp_path / "run" / "data", budget)
    assert (tmp_path / "run" / "data.work" / "state.json").is_file()
    done = json.loads((tmp_path / "run" / "data.work" / "state.json").read_text())["done"]
    assert set(done) == {"scan", "filters", "exact"}
    monkeypatch.setattr(O, "_near", real_near)
    monkeypatch.setattr(O, "_scan", lambda *a, **k: pytest.fail("scan ran again"))
    got, stats, report = _out_of_core(cfg, tmp_path / "run" / "data", budget)
    assert report["resumed_stages"] == ["scan", "filters", "exact"]
    assert got == want and _counts(stats) == _counts(want_stats)


def test_a_chunk_interrupted_mid_scan_is_redone_and_finished_chunks_are_not(tmp_path, monkeypatch):
    path = _corpus(tmp_path, n=600)
    cfg = _cfg(path)
    budget = O.Budget(limit=1 << 30, chunk=20_000, partition=4_000)
    want, _, _ = _out_of_core(cfg, tmp_path / "ref" / "data", budget)
    from trainforge.data import pipeline as P

    real_scan, seen = P.scan, []

    def flaky(cur, cfg_, ex):
        seen.append(1)
        if len(seen) == 4:
            raise KeyboardInterrupt
        return real_scan(cur, cfg_, ex)

    monkeypatch.setattr(P, "scan", flaky)
    with pytest.raises(KeyboardInterrupt):
        _out_of_core(cfg, tmp_path / "run" / "data", budget)
    seen.clear()
    monkeypatch.setattr(P, "scan", lambda *a: (seen.append(1), real_scan(*a))[1])
    got, _, report = _out_of_core(cfg, tmp_path / "run" / "data", budget)
    assert got == want and len(seen) == report["chunks"] - 3  # three chunks were finished before the stop


def test_another_config_does_not_resume(tmp_path):
    path = _corpus(tmp_path, n=200)
    work = O.Work(tmp_path / "w", O.fingerprint(_cfg(path), 0))
    work.finish("scan", {"chunks": 0})
    again = O.Work(tmp_path / "w", O.fingerprint(_cfg(path, near=0.7), 0))
    assert again.done("scan") is None


def test_sketch_threshold_is_within_its_rank_error_of_the_exact_percentile():
    from datasketches import kll_doubles_sketch

    from trainforge.data.quality import QualityStep, percentile_cut

    x = np.random.default_rng(0).lognormal(3, 1, size=200_000)
    sketch = kll_doubles_sketch(400)
    sketch.update(x)
    step = QualityStep()
    step.cfg.drop_percentile = 10.0
    O.fit_from_sketch(step, sketch)
    exact = percentile_cut(x.tolist(), 10.0)
    eps = sketch.normalized_rank_error(False)
    rank = float((x <= step.threshold).mean())
    assert abs(rank - 0.9) <= eps, (rank, eps)
    assert abs(step.threshold - exact) / exact < 0.05


def test_sizes_parse_and_a_budget_too_small_is_refused():
    assert O.parse_size("2GB") == 2_000_000_000 and O.parse_size("512MiB") == 512 << 20 and O.parse_size(10) == 10
    from trainforge.errors import UserError

    with pytest.raises(UserError, match="data.max_memory: 'lots' is not a size"):
        O.parse_size("lots")
    with pytest.raises(UserError, match="leaves nothing for data"):
        O.Budget(50 << 20)


@pytest.mark.slow
def test_peak_memory_stays_under_the_limit_on_an_input_larger_than_it(tmp_path):
    """`trainforge data dedup --max-memory` in a child process: its own peak RSS (VmHWM) against the limit, on an
    input larger than the limit (the in-memory path needs ~7× its input). Kept small for CI (~130 MB, a minute);
    benchmarks/data_scaling.py --out-of-core runs it at several GB."""
    rng = np.random.default_rng(1)
    n, length = 150_000, 300
    codes = rng.integers(0x4E00, 0x4E00 + 3000, size=(n, length), dtype=np.uint32)  # random CJK: no accidental pairs
    near = rng.choice(n, n // 10, replace=False)
    codes[near] = codes[(near + 7) % n]  # a tenth are near copies of another document: 2 characters changed
    codes[near, rng.integers(0, length, len(near))] = 0x4E00
    codes[near, rng.integers(0, length, len(near))] = 0x4E01
    path = tmp_path / "big.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        for row in codes:
            f.write('{"text": "' + row.tobytes().decode("utf-32-le") + '"}\n')
    size = path.stat().st_size
    limit = 100 << 20
    assert size > 1.2 * limit
    del codes
    # VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so a child would report this test's own peak
    probe = ("import sys; from trainforge.cli import main; from trainforge.data.outofcore import peak_rss; "
             "rc = main(sys.argv[1:]); print('PEAK', peak_rss()); sys.exit(rc)")
    out = subprocess.run([sys.executable, "-c", probe, "data", "dedup", str(path), "-o", str(tmp_path / "o"),
                          "--near", "0.8", "--max-memory", str(limit)], capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stderr[-2000:]
    peak = int(out.stdout.rsplit("PEAK", 1)[1].split()[0])
    stats = json.loads((tmp_path / "o" / "data" / "stats.json").read_text())
    assert stats["read"] == n and stats["out_of_core"]["bytes_spilled"] > size // 2
    assert stats["dropped"]["near_duplicate"] >= 0.9 * len(near)
    assert peak < limit, f"peak RSS {peak / 2**20:.0f} MiB over the {limit / 2**20:.0f} MiB limit"


def test_the_data_stage_with_max_memory_writes_the_same_splits(tmp_path):
    from trainforge.data.report import data_funnel
    from trainforge.data.stage import run_data

    base = _cfg(_corpus(tmp_path, n=400))

    def stage(name, **extra):
        class Ctx:
            section = base.model_copy(update=extra)
            config = type("Cfg", (), {"seed": 1})()

            def path(self, *parts):
                return tmp_path.joinpath(name, *parts)

        run_data(Ctx())
        return tmp_path / name / "data"

    mem, ooc = stage("mem"), stage("ooc", max_memory="200MiB")
    for split in ("train", "val", "test"):
        assert (ooc / f"{split}.jsonl").read_bytes() == (mem / f"{split}.jsonl").read_bytes(), split
    stats = json.loads((ooc / "stats.json").read_text())
    assert stats["out_of_core"]["max_memory"] == 200 << 20 and stats["out_of_core"]["peak_rss"] > 0
    assert "out of core: limit 200 MiB" in data_funnel(tmp_path / "ooc")


def test_out_of_core_on_a_local_ray_instance_keeps_the_same_set(tmp_path):
    pytest.importorskip("ray", reason="ray is optional (pip install 'trainforge[ray]')")
    path = _corpus(tmp_path, n=400)
    budget = O.Budget(limit=1 << 30, chunk=20_000, partition=4_000)
    local, local_stats, _ = _out_of_core(_cfg(path), tmp_path / "local" / "data", budget)
    on_ray, ray_stats, _ = _out_of_core(_cfg(path).model_copy(update={"executor": "ray", "workers": 2}),
                                        tmp_path / "ray" / "data", budget)
    assert on_ray == local and _counts(ray_stats) == _counts(local_stats)
