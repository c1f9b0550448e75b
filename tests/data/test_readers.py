"""Readers never crash, never lose a record, and name the line of every bad one."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trainforge.data.config import SourceConfig
from trainforge.data.io import Quarantined, Record, read_source

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _read(path: Path, **kw) -> list:
    return list(read_source(SourceConfig(path=str(path), **kw)))


def _n_lines(data: bytes) -> int:
    """Physical lines as a binary file iterates them (only b"\n" ends a line)."""
    return data.count(b"\n") + (0 if not data or data.endswith(b"\n") else 1)


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                           lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3), max_leaves=6)


@FAST
@given(lines=st.lists(st.binary(max_size=40) | st.builds(lambda v: json.dumps({"text": v, "label": "x"}).encode(), json_values), max_size=30))
def test_jsonl_random_lines_always_reconcile(tmp_path_factory, lines):
    data = b"\n".join(line.replace(b"\n", b" ").replace(b"\r", b" ") for line in lines)
    path = tmp_path_factory.mktemp("j") / "in.jsonl"
    path.write_bytes(data)
    items = _read(path)
    # exactly one item per physical line, in order, each a Record or a Quarantined with its line number
    assert len(items) == _n_lines(data)
    assert [i.line for i in items] == list(range(1, len(items) + 1))
    for it in items:
        assert isinstance(it, (Record, Quarantined))
        if isinstance(it, Record):
            assert isinstance(it.text, str) and it.text.strip() and it.label == "x"


@FAST
@given(rows=st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30), max_size=20))
def test_csv_random_rows_never_crash(tmp_path_factory, rows):
    path = tmp_path_factory.mktemp("c") / "in.csv"
    body = "\n".join(r.replace("\n", " ").replace("\r", " ") for r in rows)
    path.write_text("text,label\n" + body, encoding="utf-8")
    items = _read(path)
    assert len(items) == _n_lines(body.encode())
    for it in items:
        if isinstance(it, Quarantined):
            assert it.reason in {"wrong_column_count", "blank_line", "empty_text", "missing_label", "invalid_csv_row"}


@FAST
@given(data=st.binary(max_size=300), cut=st.integers(min_value=0, max_value=400))
def test_truncated_gzip_never_crashes(tmp_path_factory, data, cut):
    path = tmp_path_factory.mktemp("g") / "in.txt.gz"
    path.write_bytes(gzip.compress(data)[:cut])
    items = _read(path, label_field=None)
    assert all(isinstance(i, (Record, Quarantined)) for i in items)
    if items and isinstance(items[-1], Quarantined) and items[-1].reason == "truncated_file":
        assert items[-1].line == len(items)


def test_quarantine_line_numbers_and_reasons(tmp_path):
    lines = [
        json.dumps({"text": "好书", "label": "positive"}),        # 1 ok
        "{not json",                                            # 2
        json.dumps({"text": 5, "label": "positive"}),           # 3
        json.dumps({"label": "positive"}),                      # 4
        json.dumps({"text": "   ", "label": "negative"}),       # 5
        json.dumps(["a list"]),                                 # 6
        "",                                                     # 7
        json.dumps({"text": "没有标签"}),                        # 8
        json.dumps({"text": "\ud800坏", "label": "negative"}),   # 9 lone surrogate via escape
        json.dumps({"text": "很差", "label": "negative", "stars": 1}),  # 10 ok, extra field kept
    ]
    path = tmp_path / "in.jsonl"
    path.write_bytes(("\n".join(lines) + "\n").encode() + b"\xff\xfe bad bytes\n")  # 11
    items = _read(path)
    got = {i.line: i.reason for i in items if isinstance(i, Quarantined)}
    assert got == {2: "invalid_json", 3: "non_string_text", 4: "missing_text", 5: "empty_text", 6: "not_an_object",
                   7: "blank_line", 8: "missing_label", 9: "invalid_unicode", 11: "undecodable_bytes"}
    records = [i for i in items if isinstance(i, Record)]
    assert [r.line for r in records] == [1, 10] and records[1].meta == {"stars": 1}
    assert all(q.source == str(path) for q in items if isinstance(q, Quarantined))


def test_csv_wrong_column_count_is_quarantined_with_its_line(tmp_path):
    path = tmp_path / "in.tsv"
    path.write_text("text\tlabel\n好\tpositive\n坏\tnegative\textra\n差\n", encoding="utf-8")
    items = _read(path)
    assert [(i.line, i.reason) for i in items if isinstance(i, Quarantined)] == [(3, "wrong_column_count"), (4, "wrong_column_count")]


def test_parquet_zstd_txt_doc_and_datasets_dir(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    import zstandard

    table = pa.table({"review": ["质量不错", None, "物流很快"], "y": ["pos", "neg", "pos"], "rid": [7, 8, 9]})
    pq.write_table(table, tmp_path / "r.parquet", row_group_size=2)
    items = _read(tmp_path / "r.parquet", text_field="review", label_field="y", id_field="rid")
    assert [type(i).__name__ for i in items] == ["Record", "Quarantined", "Record"]
    assert items[1].line == 2 and items[1].reason == "non_string_text" and items[2].id == "9"

    (tmp_path / "a.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress('{"text": "好"}\n{"text": "坏"}\n'.encode()))
    assert [i.text for i in _read(tmp_path / "a.jsonl.zst", label_field=None)] == ["好", "坏"]

    (tmp_path / "doc.txt").write_text("第一行\n第二行\n", encoding="utf-8")
    docs = _read(tmp_path / "doc.txt", format="txt-doc", label_field=None)
    assert len(docs) == 1 and docs[0].text == "第一行\n第二行"

    # a `datasets` save_to_disk directory: Arrow stream file + state.json
    d = tmp_path / "hf"
    d.mkdir()
    with pa.OSFile(str(d / "data-00000-of-00001.arrow"), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    (d / "state.json").write_text(json.dumps({"_data_files": [{"filename": "data-00000-of-00001.arrow"}]}))
    hf = _read(d, text_field="review", label_field="y")
    assert [i.text for i in hf if isinstance(i, Record)] == ["质量不错", "物流很快"]


def test_missing_file_is_a_user_error(tmp_path):
    from trainforge.errors import UserError

    with pytest.raises(UserError, match="no such file"):
        _read(tmp_path / "nope.jsonl")
