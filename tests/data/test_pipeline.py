"""The whole pipeline: funnel reconciles for any input, executors agree, CLI and report end to end."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trainforge.data import pipeline as P
from trainforge.data.config import DataConfig, DedupConfig, FilterSpec, NormalizeConfig, SourceConfig
from trainforge.data.executor import LocalExecutor, PoolExecutor, shard
from trainforge.data.synthetic import planted_corpus

FILTERS = [{"length": {"min_chars": 2}}, {"script_ratio": {}}, {"symbol_ratio": {}}, {"repetition": {}},
           {"bad_words": {}}, {"quality": {"drop_percentile": 5}}]


def _cfg(path: Path, **kw) -> DataConfig:
    base = dict(sources=[SourceConfig(path=str(path), label_field=None)], filters=[FilterSpec(**f) for f in FILTERS],
                normalize=NormalizeConfig(html=True, pii="mask"), dedup=DedupConfig(exact="bloom", near=0.8))
    return DataConfig(**(base | kw))


def _run(cfg: DataConfig, out: Path, executor) -> tuple[P.Curated, dict]:
    from itertools import chain

    from trainforge.data.io import read_source

    funnel = P.Funnel(out, seed=0)
    # a pool gets its shards while read_all reads (streamed); one process gets them in clean
    cur = P.read_all(chain.from_iterable(read_source(s) for s in cfg.sources), funnel, out, cfg=cfg, executor=executor)
    cur = P.clean(cur, cfg, funnel, executor)
    cur = P.dedup_exact(cur, cfg, funnel)
    cur = P.dedup_near(cur, cfg, funnel, executor, log=lambda m: None)
    return cur, funnel.stats(cur.read, len(cur.records), cur.quarantined)


@settings(max_examples=25, deadline=None)
@given(lines=st.lists(st.one_of(st.text(max_size=60), st.sampled_from(["质量不错", "质量不错", "<b>好</b>", "   ", "\x00\x07"])), max_size=40))
def test_funnel_reconciles_for_any_input(lines):
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "in.jsonl"
        src.write_text("\n".join(json.dumps({"text": t}) for t in lines) + ("\n" if lines else ""), encoding="utf-8")
        cur, stats = _run(_cfg(src), Path(d) / "out", LocalExecutor())
        assert stats["read"] == len(lines)
        assert stats["read"] == stats["kept"] + stats["quarantined"] + sum(stats["dropped"].values())
        rejected = sum(1 for f in (Path(d) / "out" / "rejected").glob("*.jsonl") for _ in open(f, encoding="utf-8"))
        assert rejected == sum(stats["dropped"].values())  # every drop is written with its reason


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory) -> Path:
    c = planted_corpus(1500, seed=5)
    path = tmp_path_factory.mktemp("c") / "corpus.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        for i, t in enumerate(c.texts):
            f.write(json.dumps({"text": t, "n": i}, ensure_ascii=False) + "\n")
    return path


@pytest.mark.parametrize("exact,workers", [("bloom", 2), ("off", 3)])
def test_process_pool_keeps_exactly_what_one_process_keeps(corpus_file, tmp_path, exact, workers, monkeypatch):
    # exact off: in-shard repeats are not skipped by the workers and reach near dedup; 3 workers: other shard cuts
    monkeypatch.setattr(P, "STREAM_BLOCK", 97)  # many shards handed out while reading (1,500 docs)
    cfg = _cfg(corpus_file, dedup=DedupConfig(exact=exact, near=0.8))
    one, s1 = _run(cfg, tmp_path / "one", LocalExecutor())
    pool = PoolExecutor(workers)
    try:
        two, s2 = _run(cfg, tmp_path / "two", pool)
    finally:
        pool.close()
    assert [r.id for r in one.records] == [r.id for r in two.records]
    assert [r.text for r in one.records] == [r.text for r in two.records]
    assert one.scores == two.scores and len(one.scores) == len(one.records)
    assert s1["dropped"] == s2["dropped"] and s1["dropped"]["near_duplicate"] > 0
    assert (s1["dropped"].get("exact_duplicate", 0) > 0) == (exact != "off")
    assert {k: (v["docs_in"], v["docs_out"], v["bytes_out"]) for k, v in s1["steps"].items()} == \
           {k: (v["docs_in"], v["docs_out"], v["bytes_out"]) for k, v in s2["steps"].items()}
    near = ("candidate_pairs", "confirmed_pairs", "clusters")  # confirmation in the workers vs lazily in the parent
    assert [s1["steps"]["dedup_near"][k] for k in near] == [s2["steps"]["dedup_near"][k] for k in near]
    # the workers' signatures and digests, carried through the global steps, are those of the final texts
    from trainforge.data import bloom as B
    from trainforge.data import minhash as M

    direct = M.signatures([r.text for r in two.records], M.MinHashParams(num_perm=128, ngram=5))
    assert np.array_equal(two.sigs, direct) and np.array_equal(one.sigs, direct)
    assert two.digests == [B.digest(r.text) for r in two.records]


def test_ray_executor_matches_when_ray_is_installed(corpus_file, tmp_path):
    pytest.importorskip("ray", reason="ray is optional (pip install 'trainforge[ray]')")
    from trainforge.data.executor import RayExecutor

    cfg = _cfg(corpus_file, filters=[])
    one, _ = _run(cfg, tmp_path / "one", LocalExecutor())
    ray = RayExecutor(2)
    try:
        two, _ = _run(cfg, tmp_path / "ray", ray)
    finally:
        ray.close()
    assert [r.id for r in one.records] == [r.id for r in two.records]


def test_shard_is_contiguous_and_complete():
    items = list(range(10))
    parts = shard(items, 3)
    assert [x for p in parts for x in p] == items and len(parts) == 3


def test_quality_filter_must_be_last(corpus_file, tmp_path):
    from trainforge.errors import UserError

    cfg = _cfg(corpus_file, filters=[FilterSpec(quality={}), FilterSpec(length={})])
    with pytest.raises(UserError, match="quality filter must be the last"):
        _run(cfg, tmp_path / "o", LocalExecutor())


def _cli(*argv) -> int:
    from trainforge.cli import main

    return main(list(argv))


def test_cli_clean_dedup_stats_end_to_end(corpus_file, tmp_path, capsys):
    out = tmp_path / "cleaned"
    assert _cli("data", "clean", str(corpus_file), "-o", str(out), "--pii", "mask") == 0
    stats = json.loads((out / "data" / "stats.json").read_text())
    assert (out / "data" / "kept.jsonl").is_file() and (out / "data" / "quarantine" / "records.jsonl").is_file()
    assert stats["read"] == 1500 == stats["kept"] + stats["quarantined"] + sum(stats["dropped"].values())

    state = tmp_path / "bloom" / "seen"
    dedup = tmp_path / "dedup"
    assert _cli("data", "dedup", str(corpus_file), "-o", str(dedup), "--near", "0.8", "--bloom-fp", "1e-6",
                "--bloom-state", str(state)) == 0
    s = json.loads((dedup / "data" / "stats.json").read_text())
    assert s["dropped"]["exact_duplicate"] > 0 and s["dropped"]["near_duplicate"] > 0
    bloom = s["steps"]["dedup_exact"]["bloom"]
    assert bloom["bytes"] <= 1.05 * bloom["optimal_bytes"] and bloom["fp_measured"] <= 1e-4
    assert (dedup / "data" / "rejected" / "near_duplicate.jsonl").is_file()
    # a second batch against the persisted filter: everything in it was seen before
    again = tmp_path / "again"
    assert _cli("data", "dedup", str(corpus_file), "-o", str(again), "--near", "0", "--bloom-state", str(state)) == 0
    s2 = json.loads((again / "data" / "stats.json").read_text())
    assert s2["kept"] == 0 and s2["dropped"]["exact_duplicate"] == 1500

    capsys.readouterr()
    assert _cli("data", "stats", str(dedup)) == 0
    printed = capsys.readouterr()
    assert "dedup_near" in printed.out + printed.err and "✓" in printed.out + printed.err
    assert _cli("data", "stats", str(tmp_path / "nowhere")) == 2


def test_stage_writes_the_run_layout_and_report_section(tmp_path):
    from tests.conftest import make_reviews

    from trainforge.data.report import data_funnel
    from trainforge.data.stage import run_data

    src = tmp_path / "reviews.jsonl"
    rows = make_reviews(200) + make_reviews(200)[:30]
    src.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n{broken\n", encoding="utf-8")

    class Ctx:
        section = DataConfig(sources=[SourceConfig(path=str(src))], filters=[FilterSpec(**f) for f in FILTERS[:-1]])
        config = type("Cfg", (), {"seed": 1})()

        def path(self, *parts):
            return tmp_path.joinpath("run", *parts)

    metrics = run_data(Ctx())
    data = tmp_path / "run" / "data"
    stats = json.loads((data / "stats.json").read_text())
    assert {"read", "kept", "quarantined", "dropped", "steps", "splits", "labels", "examples"} <= set(stats)
    assert stats["read"] == 231 and stats["quarantined"] == 1 and stats["dropped"]["exact_duplicate"] == 30
    assert sum(stats["splits"].values()) == stats["kept"] == metrics["kept"]
    for name in ("train", "val", "test"):
        first = json.loads((data / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()[0])
        assert {"id", "text", "label", "source"} <= set(first)
    quarantined = [json.loads(line) for line in (data / "quarantine" / "records.jsonl").read_text().splitlines()]
    assert [(q["source"], q["line"], q["reason"]) for q in quarantined] == [(str(src), 231, "invalid_json")]
    html = data_funnel(tmp_path / "run")
    assert "data:image/png;base64" in html and "✓" in html and "exact_duplicate" in html


@pytest.mark.parametrize("exact", ["hash", "bloom"])
def test_streaming_in_chunks_keeps_what_the_in_memory_run_keeps(corpus_file, tmp_path, exact):
    from trainforge.data.stage import curate_in_chunks, curate_sources, streamable

    cfg = _cfg(corpus_file, filters=[FilterSpec(**f) for f in FILTERS[:-1]], dedup=DedupConfig(exact=exact, near=None))
    assert streamable(cfg) and not streamable(_cfg(corpus_file))
    whole, funnel = curate_sources(cfg, tmp_path / "whole", seed=0)
    chunks: list[list[str]] = []

    def sink(records, funnel):
        chunks.append([r.id for r in records])
        return len(records)

    read, quarantined, kept, streamed = curate_in_chunks(cfg, tmp_path / "chunks", seed=0, sink=sink, chunk_docs=97)
    assert len(chunks) == 16  # 1500 docs / 97 per chunk: copies in different chunks still meet
    assert [i for c in chunks for i in c] == [r.id for r in whole.records]
    a = funnel.stats(whole.read, len(whole.records), whole.quarantined)
    b = streamed.stats(read, kept, quarantined)
    assert a["dropped"] == b["dropped"] and a["steps"]["dedup_exact"]["docs_in"] == b["steps"]["dedup_exact"]["docs_in"]
