"""WARC round trip, files and globs, and the collect → data hand-over in a run."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import yaml

from tests.collect.site import article
from trainforge.collect.config import CollectConfig
from trainforge.collect.output import content_sha256
from trainforge.collect.stage import collect


def _write_warc(path: Path) -> None:
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    with open(path, "wb") as f:
        w = WARCWriter(f, gzip=True)
        w.write_record(w.create_warcinfo_record(path.name, {"software": "trainforge-test"}))
        for url, status, ctype, body in [
            ("https://example.org/a", "200 OK", "text/html; charset=utf-8", article("WARC page", ["/b"]).encode()),
            ("https://example.org/gone", "404 Not Found", "text/html", b"<html><body>gone</body></html>"),
            ("https://example.org/file.pdf", "200 OK", "application/pdf", b"%PDF-1.4 ..."),
        ]:
            headers = StatusAndHeaders(status, [("Content-Type", ctype)], protocol="HTTP/1.1")
            w.write_record(w.create_warc_record(url, "response", payload=io.BytesIO(body), http_headers=headers))
            w.write_record(w.create_warc_record(url, "request", payload=io.BytesIO(b"GET / HTTP/1.1\r\n\r\n")))


def test_warc_round_trip_through_the_same_extraction(tmp_path):
    pytest.importorskip("warcio", reason="WARC input needs warcio: pip install 'trainforge[collect]'")
    pytest.importorskip("trafilatura", reason="extraction needs trafilatura: pip install 'trainforge[crawl]'")
    _write_warc(tmp_path / "crawl.warc.gz")
    stats = collect(CollectConfig(sources=[{"name": "cc", "warc": {"glob": str(tmp_path / "*.warc.gz")}}]), tmp_path / "out")
    src = stats["sources"]["cc"]
    assert (src["fetched"], src["kept"], src["failed"]) == (3, 1, {"http_404": 1, "not_html": 1})
    assert src["other_records"] == 4  # warcinfo + three requests: no documents, counted
    [row] = [json.loads(line) for line in open(tmp_path / "out" / "records.jsonl", encoding="utf-8")]
    assert row["url"] == "https://example.org/a" and row["title"] == "WARC page" and row["fetched_at"].startswith("20")
    assert "房间干净整洁" in row["text"] and row["content_sha256"] == content_sha256(row["text"])
    assert row["warc_record_id"].startswith("<urn:uuid:")


def test_files_and_globs_keep_labels_and_count_unreadable_lines(tmp_path):
    raw = tmp_path / "raw" / "2024"
    raw.mkdir(parents=True)
    (raw / "a.jsonl").write_text('{"text": "好评", "label": "positive", "shop": 3}\n{not json\n', encoding="utf-8")
    (tmp_path / "raw" / "b.jsonl").write_text('{"text": "差评", "label": "negative"}\n{"text": "没标签"}\n', encoding="utf-8")
    stats = collect(CollectConfig(sources=[{"name": "notes", "files": {"glob": str(tmp_path / "raw/**/*.jsonl"), "label_field": "label"}}]),
                    tmp_path / "out")
    rows = [json.loads(line) for line in open(tmp_path / "out" / "records.jsonl", encoding="utf-8")]
    assert [(r["text"], r["label"]) for r in rows] == [("好评", "positive"), ("差评", "negative")]  # sorted paths: 2024/a before b
    assert rows[0]["shop"] == 3 and rows[0]["source"] == "notes"
    assert stats["failed"] == {"invalid_json": 1, "missing_label": 1} and stats["fetched"] == 4


def test_html_files_go_through_the_page_extraction(tmp_path):
    pytest.importorskip("trafilatura", reason="extraction needs trafilatura: pip install 'trainforge[crawl]'")
    (tmp_path / "page.html").write_text(article("Saved page", ["/x"]), encoding="utf-8")
    (tmp_path / "blank.htm").write_text("<html><body></body></html>", encoding="utf-8")
    stats = collect(CollectConfig(sources=[{"name": "saved", "files": {"glob": str(tmp_path / "*.htm*")}}]), tmp_path / "out")
    [row] = [json.loads(line) for line in open(tmp_path / "out" / "records.jsonl", encoding="utf-8")]
    assert row["title"] == "Saved page" and "房间干净整洁" in row["text"] and "© example" not in row["text"]
    assert stats["failed"] == {"no_main_text": 1}


def test_a_glob_that_matches_nothing_is_a_user_error(tmp_path):
    from trainforge.errors import UserError

    with pytest.raises(UserError, match=r"collect.sources.0.files.glob: .* matches no file"):
        collect(CollectConfig(sources=[{"name": "x", "files": {"glob": str(tmp_path / "*.jsonl")}}]), tmp_path / "out")


def test_collect_runs_before_data_and_data_reads_its_records(tmp_path):
    from trainforge.config import load_config
    from trainforge.run import run_pipeline

    rows = [{"text": f"第{i}条评论{'很好' if i % 2 else '很差'}的东西", "label": "positive" if i % 2 else "negative"} for i in range(40)]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    cfg = {"name": "c", "runs_dir": str(tmp_path / "runs"), "tracking": {"enabled": False},
           "collect": {"sources": [{"name": "notes", "files": {"glob": str(tmp_path / "*.jsonl"), "label_field": "label"}}]},
           "data": {"dedup": {"near": None}, "decontaminate": None}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    result = run_pipeline(load_config(tmp_path / "c.yaml"))
    assert result.ran == ["collect", "data"]
    run = tmp_path / "runs" / "c"
    kept = [json.loads(line) for s in ("train", "val", "test") for line in open(run / "data" / f"{s}.jsonl", encoding="utf-8")]
    assert sorted(r["text"] for r in kept) == sorted(r["text"] for r in rows) and all("content_sha256" in r for r in kept)
    assert "<h2>Collect</h2>" in (run / "report.html").read_text(encoding="utf-8")
    assert run_pipeline(load_config(tmp_path / "c.yaml")).cached == ["collect", "data"]


def test_data_without_sources_needs_a_collect_section(tmp_path):
    from trainforge.config import validate_config
    from trainforge.errors import UserError

    with pytest.raises(UserError, match="data.sources: give at least one source"):
        validate_config({"name": "x", "data": {}})


def test_cli_data_collect_writes_the_collect_layout(tmp_path, capsys):
    from trainforge.cli import main

    (tmp_path / "a.jsonl").write_text('{"text": "好评", "label": "positive"}\n', encoding="utf-8")
    (tmp_path / "sources.yaml").write_text(yaml.safe_dump({"collect": {"sources": [
        {"name": "notes", "files": {"glob": str(tmp_path / "a.jsonl"), "label_field": "label"}}]}}), encoding="utf-8")
    assert main(["data", "collect", str(tmp_path / "sources.yaml"), "-o", str(tmp_path / "out"),
                 "--files", str(tmp_path / "a.jsonl")]) == 0
    stats = json.loads((tmp_path / "out" / "collect" / "stats.json").read_text())
    assert list(stats["sources"]) == ["notes", "files0"] and stats["kept"] == 2
    assert "collect funnel" in capsys.readouterr().err  # the console writes to stderr
    assert main(["data", "collect", "-o", str(tmp_path / "none")]) == 2  # nothing to collect: a sentence, exit 2
