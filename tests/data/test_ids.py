"""Defaults that lose nothing: a record's own id is kept (file:line only where it has none), and every field
no mapping takes is written back — under `original_<name>` when the record writes that name itself."""

from __future__ import annotations

import json

import pytest

from trainforge.cli import main

ROWS = [
    {"id": "b521", "text": "这本书写得很好，值得一读", "label": "pos", "source": "shop", "stars": 5},
    {"text": "物流太慢了，包装也破了", "label": "neg", "source": "hotel"},  # no id of its own
    {"id": 7, "text": "房间干净，服务周到，下次还来", "label": "pos", "lang": "zh"},  # a numeric id
    {"id": "b521", "text": "这本书写得很好，值得一读", "label": "pos", "source": "shop", "stars": 5},  # exact duplicate
]


@pytest.fixture
def records(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ROWS), encoding="utf-8")
    return path


def _kept(out) -> list[dict]:
    return [json.loads(x) for x in (out / "data" / "kept.jsonl").read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("verb", ["clean", "dedup"])
def test_cli_keeps_the_records_own_id_and_every_field(records, tmp_path, verb):
    out = tmp_path / verb
    assert main(["data", verb, str(records), "-o", str(out), "--lang", "zh"] if verb == "clean"
                else ["data", verb, str(records), "-o", str(out), "--near", "0"]) == 0
    kept = _kept(out)
    first = kept[0]
    assert first["id"] == "b521" and first["stars"] == 5 and first["label"] == "pos"  # the label passes through
    assert first["original_source"] == "shop" and first["source"] == str(records)
    assert kept[1]["id"] == "in.jsonl:2" and kept[1]["original_source"] == "hotel"
    assert kept[2]["id"] == "7" and kept[2]["lang"] == "zh" and "original_source" not in kept[2]
    assert len(kept) == (4 if verb == "clean" else 3)


def test_id_field_empty_means_file_line(records, tmp_path):
    out = tmp_path / "o"
    assert main(["data", "dedup", str(records), "-o", str(out), "--near", "0", "--id-field", ""]) == 0
    kept = _kept(out)
    assert [r["id"] for r in kept] == ["in.jsonl:1", "in.jsonl:2", "in.jsonl:3"]
    assert kept[0]["original_id"] == "b521"  # not lost: kept beside the file:line id


def test_fields_colliding_with_mapped_names_are_kept(tmp_path):
    from trainforge.data.config import SourceConfig
    from trainforge.data.io import read_source

    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps({"review": "很好", "text": "raw html", "label": "x", "stars": "5", "original_text": "t0"},
                               ensure_ascii=False) + "\n", encoding="utf-8")
    (rec,) = list(read_source(SourceConfig(path=str(path), text_field="review", label_field="stars")))
    out = rec.to_json()
    assert out["text"] == "很好" and out["label"] == "5"
    assert out["original_text"] == "t0" and out["original_original_text"] == "raw html"  # no name overwritten
    assert out["original_label"] == "x"
