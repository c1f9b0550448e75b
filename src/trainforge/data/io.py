"""Streaming readers that never lose a record: each input line/row becomes a Record or a Quarantined entry.

Formats: JSONL, CSV/TSV, Parquet, plain text (a document per line or per file) and Hugging Face
`datasets` directories; gzip and zstd. Files are read as streams (line by line, Parquet by row-group
batches), so reading itself holds one batch in memory.

A Quarantined entry keeps the source file, the 1-based line number, a snake_case reason and the
raw text (truncated), so a person can find and fix it.

A record carries what its task needs: text; an image or audio reference (a path or URL, never
loaded here); a chat (`messages`, a list of {role, content}); a prompt with `chosen`/`rejected`
(DPO) or with a `reference` answer (GRPO). SourceConfig maps the user's field names onto these;
every field it does not map stays in `meta` and is written back. The pipeline cleans the
*text-bearing* fields (text, message contents, prompt, chosen, rejected, reference) and judges
their join, `Record.document`; a record with no text (an image with a label) is not judged by text
filters, and its exact-dedup key is its content reference (`Record.content_key`).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Union

from trainforge.data.builtin import BUILTIN_RECORDS, builtin_lines, strip_seg_tags
from trainforge.data.config import SourceConfig
from trainforge.errors import UserError

Messages = list[dict]
"""A chat: [{"role": "user", "content": "…"}, …]; other keys of a message are kept as they are."""


@dataclass
class Record:
    id: str
    text: str | None
    label: str | None
    source: str
    line: int
    meta: dict = field(default_factory=dict)
    image: str | None = None
    """Path or URL of an image."""
    audio: str | None = None
    """Path or URL of an audio clip."""
    messages: Messages | None = None
    prompt: str | Messages | None = None
    chosen: str | Messages | None = None
    rejected: str | Messages | None = None
    reference: str | None = None
    """The verifiable answer to `prompt`."""

    def _plain(self) -> bool:
        return (self.messages is None and self.prompt is None and self.chosen is None and self.rejected is None
                and self.reference is None)

    def single_text(self) -> bool:
        """Is `text` the record's one text-bearing value (every record of a text dataset)?"""
        return self.text is not None and self._plain()

    def segments(self) -> list[str]:
        """The text-bearing values, in a fixed order: text, message contents, prompt, chosen, rejected, reference."""
        if self._plain():
            return [] if self.text is None else [self.text]
        out = [] if self.text is None else [self.text]
        for value in (self.messages, self.prompt, self.chosen, self.rejected, self.reference):
            if isinstance(value, str):
                out.append(value)
            elif value is not None:
                out.extend(m["content"] for m in value)
        return out

    def set_segments(self, new: list[str] | tuple[str, ...]) -> None:
        """Write cleaned values back, in the order of `segments()`."""
        it = iter(new)
        if self.text is not None:
            self.text = next(it)
        for name in ("messages", "prompt", "chosen", "rejected", "reference"):
            value = getattr(self, name)
            if isinstance(value, str):
                setattr(self, name, next(it))
            elif value is not None:
                setattr(self, name, [{**m, "content": next(it)} for m in value])

    @property
    def document(self) -> str:
        """What text filters, dedup and decontamination judge: the text-bearing values joined by newlines
        ("" for a record without text). For a text record it is the text itself."""
        if self._plain():
            return self.text or ""
        return "\n".join(self.segments())

    def media(self) -> str:
        """The content references ("" for none), as they enter the exact-dedup key."""
        if self.image is None and self.audio is None:
            return ""
        return "".join(f"\x00{k}={v}" for k, v in (("image", self.image), ("audio", self.audio)) if v is not None)

    def content_key(self) -> str:
        """Exact-dedup key: the document, and the references of a record that has media."""
        return self.document + self.media()

    def to_json(self) -> dict:
        out = {"id": self.id}
        if self.text is not None:
            out["text"] = self.text
        if self.label is not None:
            out["label"] = self.label
        out["source"] = self.source
        for name in ("image", "audio", "messages", "prompt", "chosen", "rejected", "reference"):
            if (value := getattr(self, name)) is not None:  # only when present: a text record writes what it always did
                out[name] = value
        out.update(self.meta)
        return out


@dataclass
class Quarantined:
    source: str
    line: int
    reason: str
    raw: str

    def to_json(self) -> dict:
        return {"source": self.source, "line": self.line, "reason": self.reason, "raw": self.raw[:2000]}


Item = Union[Record, Quarantined]


def read_source(src: SourceConfig, check_images: bool = False) -> Iterator[Item]:
    """check_images (the data stage): decode each record's image and audio clip, resolve a relative path against its
    file, and quarantine one that is missing or corrupt with the reason (trainforge/vision/images.py,
    trainforge/audio/waves.py); readers alone never load a reference."""
    items = _read_builtin(src) if src.builtin is not None else _read_path(src)
    if check_images and src.check_images:
        items = checked_audio(checked_images(items))
    yield from items


def checked_images(items: Iterator[Item]) -> Iterator[Item]:
    """Records whose image decodes pass, a relative path made absolute against the file naming it; one that does
    not is quarantined with its file (an image folder's: the image itself), line and reason."""
    from trainforge.vision.images import DATA_URL_PREFIX, check_image

    for item in items:
        if isinstance(item, Record) and item.image is not None:
            ref = item.image
            if not ref.startswith((DATA_URL_PREFIX, "/", "http://", "https://", "file://")) and Path(item.source).is_file():
                item.image = ref = str(Path(item.source).parent / ref)
            reason = check_image(ref)
            if reason:
                source = ref if Path(item.source).is_dir() else item.source
                yield Quarantined(source, item.line, reason, f"image={ref[:300]}; id={item.id}")
                continue
        yield item


def checked_audio(items: Iterator[Item]) -> Iterator[Item]:
    """The same pass for audio (trainforge/audio/waves.py): a relative path made absolute against its file; a clip
    that does not decode is quarantined with its file, line and reason."""
    from trainforge.audio.waves import check_audio

    for item in items:
        if isinstance(item, Record) and item.audio is not None:
            ref = item.audio
            if not ref.startswith(("/", "http://", "https://", "file://")) and Path(item.source).is_file():
                item.audio = ref = str(Path(item.source).parent / ref)
            reason = check_audio(ref)
            if reason:
                yield Quarantined(item.source, item.line, reason, f"audio={ref[:300]}; id={item.id}")
                continue
        yield item


def _read_builtin(src: SourceConfig) -> Iterator[Item]:
    if src.builtin in BUILTIN_RECORDS:  # generated records (arithmetic, digits): whole records, the rest in meta
        for n, rec in enumerate(BUILTIN_RECORDS[src.builtin](), start=1):
            if src.limit is not None and n > src.limit:
                return
            rec = dict(rec)
            rid, line = rec.pop("id", f"{src.builtin}:{n}"), rec.pop("line", n)
            fields = {k: rec.pop(k) for k in ("text", "label", "image", "audio", "messages", "prompt", "chosen", "rejected",
                                              "reference") if k in rec}
            meta = {**rec.pop("meta", {}), **rec}
            yield Record(rid, fields.pop("text", None), fields.pop("label", None), src.builtin, line, meta, **fields)
        return
    n = 0
    for path, line_no, raw, label in builtin_lines(src.builtin):
        if src.limit is not None and n >= src.limit:
            return
        n += 1
        name = src.builtin
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            yield Quarantined(path, line_no, "undecodable_bytes", raw.decode("utf-8", "replace"))
            continue
        text = text.rstrip("\r\n")
        if name == "peoples-daily-1998":
            text = strip_seg_tags(text)
        if not text.strip():
            yield Quarantined(path, line_no, "empty_text", text)
            continue
        yield Record(f"{name}:{Path(path).name}:{line_no}", text, label, name, line_no)


def _open_binary(path: Path):
    if path.suffix == ".gz":
        return gzip.open(path, "rb")
    if path.suffix == ".zst":
        try:
            import zstandard
        except ImportError:
            raise UserError(f"{path}: reading .zst needs zstandard: pip install 'trainforge[data]'") from None
        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(open(path, "rb"), closefd=True))
    return open(path, "rb")


def _open_lines(path: Path) -> Iterator[tuple[int, bytes | None]]:
    """(1-based line number, raw bytes) in a stream; a compressed file cut short ends with (n, None)."""
    i = 0
    with _open_binary(path) as f:
        try:
            for i, raw in enumerate(f, start=1):
                yield i, raw
        except (EOFError, OSError, ValueError) as e:  # truncated gzip/zstd, corrupt frame
            yield i + 1, None
            del e


KINDS = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".tsv": "tsv", ".txt": "txt", ".parquet": "parquet"}


def detect_format(path: Path) -> str:
    if path.is_dir():
        datasets_dir = (path / "state.json").is_file() or (path / "dataset_dict.json").is_file()
        return "hf" if datasets_dir or not any(p.is_dir() for p in path.iterdir()) else "image-folder"
    suffixes = [s for s in path.suffixes if s not in (".gz", ".zst")]
    kind = KINDS.get(suffixes[-1] if suffixes else ".txt")
    if kind is None:
        raise UserError(f"data.sources: {path}: unsupported format '{suffixes[-1]}' (use .jsonl, .csv, .tsv, .parquet, .txt, "
                        "optionally .gz/.zst, or a datasets directory; or set `format`)")
    return kind


def _read_path(src: SourceConfig) -> Iterator[Item]:
    path = Path(src.path)
    if not path.exists():
        raise UserError(f"data.sources: {path}: no such file or directory")
    kind = detect_format(path) if src.format == "auto" else src.format
    readers = {"jsonl": _jsonl, "csv": _csv, "tsv": _csv, "txt": _txt, "txt-doc": _txt_doc, "parquet": _parquet, "hf": _hf_dir,
               "image-folder": _image_folder}
    n = 0
    for item in readers[kind](path, src, delimiter="\t" if kind == "tsv" else ","):
        if src.limit is not None and n >= src.limit:
            return
        n += 1
        yield item


def _truncated(path: Path, line_no: int) -> "Quarantined":
    return Quarantined(str(path), line_no, "truncated_file", "")


def _decode(path: Path, line_no: int, raw: bytes) -> str | Quarantined:
    try:
        return raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        return Quarantined(str(path), line_no, "undecodable_bytes", raw.decode("utf-8", "replace"))


def _from_fields(path: Path, line_no: int, obj: dict, src: SourceConfig, raw: str) -> Item:
    fields = src.content_fields()
    if len(fields) == 1:  # text alone: the text reader's reasons
        if src.text_field not in obj:
            return Quarantined(str(path), line_no, "missing_text", raw)
        text = obj.get(src.text_field)
        if not isinstance(text, str):
            return Quarantined(str(path), line_no, "non_string_text", raw)
        if not text.strip():
            return Quarantined(str(path), line_no, "empty_text", raw)
        content = {"text": text}
    else:
        content = _content(obj, fields)
        if isinstance(content, str):
            return Quarantined(str(path), line_no, content, raw)
    try:
        for value in content.values():
            (value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a JSON "\ud800" escape
        return Quarantined(str(path), line_no, "invalid_unicode", raw.encode("utf-8", "replace").decode())
    label = None
    if src.label_field is not None:
        label = obj.get(src.label_field)
        if label is None or isinstance(label, (dict, list)) or (isinstance(label, str) and not label.strip()):
            return Quarantined(str(path), line_no, "missing_label", raw)
        label = str(label)
    has_id = bool(src.id_field) and obj.get(src.id_field) is not None and str(obj[src.id_field]).strip() != ""
    rid = str(obj[src.id_field]) if has_id else f"{path.name}:{line_no}"
    # what the record's own fields became: the mapped ones are taken; a mapped field whose value was absent
    # (null, an empty CSV cell) stays in meta as it was; every other field goes to meta by its own name
    taken = {fields[k] for k in content} | ({src.id_field} if has_id else set()) | ({src.label_field} if label is not None else set())
    text = content.pop("text", None)
    record = Record(rid, text, label, str(path), line_no, {}, **content)
    record.meta = _unmapped(obj, taken, record)
    return record


def _unmapped(obj: dict, taken: set, record: Record) -> dict:
    """The fields no mapping took. One whose name the record writes itself (id, source, text, label, …) would be
    overwritten on output, so it is kept as `original_<name>` (`original_source`: the user's own source field)."""
    meta: dict = {}
    reserved = set(record.to_json())  # the keys the record writes: id, source, and whichever of text/label/… it has
    for k, v in obj.items():
        if k in taken:
            continue
        if k in reserved and k not in taken:
            if v is None:
                continue  # e.g. "id": null — there is no value to lose
            name = f"original_{k}"
            while name in obj or name in meta:
                name = f"original_{name}"
            meta[name] = v
        else:
            meta[k] = v
    return meta


def _is_chat(value) -> bool:
    return (isinstance(value, list) and len(value) > 0
            and all(isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in value))


def _content(obj: dict, fields: dict[str, str]) -> dict | str:
    """The mapped content of one row, or the snake_case reason it is quarantined (naming the field)."""
    got: dict = {}
    for name, key in fields.items():
        value = obj.get(key)
        if value is None or (name != "text" and isinstance(value, str) and not value.strip()):
            continue  # absent: this row is another kind, or the CSV cell is empty
        if name == "text":
            if not isinstance(value, str):
                return "non_string_text"
        elif name == "image" and isinstance(value, (bytes, dict)):  # Parquet: image bytes, or datasets' {bytes, path}
            value = value.get("bytes") or value.get("path") if isinstance(value, dict) else value
            if not isinstance(value, (bytes, str)) or not value:
                return "invalid_image"
            if isinstance(value, bytes):
                from trainforge.vision.images import to_data_url

                value = to_data_url(value)
        elif name in ("image", "audio"):
            if not isinstance(value, str):
                return f"invalid_{name}"
        elif name == "messages":
            if isinstance(value, str):  # CSV: the chat as JSON text
                try:
                    value = json.loads(value)
                except json.JSONDecodeError:
                    return "invalid_messages"
            if not _is_chat(value):
                return "invalid_messages"
        elif name == "reference":
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                value = str(value)  # a numeric answer; compared as text
            if not isinstance(value, str):
                return "invalid_reference"
        elif not (isinstance(value, str) or _is_chat(value)):  # prompt, chosen, rejected
            return f"invalid_{name}"
        got[name] = value
    if ("chosen" in got) != ("rejected" in got):
        return "chosen_without_rejected" if "chosen" in got else "rejected_without_chosen"
    if "reference" in got and "prompt" not in got:
        return "reference_without_prompt"
    if not any(k != "text" or v.strip() for k, v in got.items()):
        return "empty_text" if "text" in got else "no_content"
    return got


def _jsonl(path: Path, src: SourceConfig, delimiter: str = ",") -> Iterator[Item]:
    for line_no, raw in _open_lines(path):
        if raw is None:
            yield _truncated(path, line_no)
            return
        text = _decode(path, line_no, raw)
        if isinstance(text, Quarantined):
            yield text
            continue
        if not text.strip():
            yield Quarantined(str(path), line_no, "blank_line", text)
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError:
            yield Quarantined(str(path), line_no, "invalid_json", text)
            continue
        if not isinstance(obj, dict):
            yield Quarantined(str(path), line_no, "not_an_object", text)
            continue
        yield _from_fields(path, line_no, obj, src, text)


def _csv(path: Path, src: SourceConfig, delimiter: str = ",") -> Iterator[Item]:
    header: list[str] | None = None
    for line_no, raw in _open_lines(path):
        if raw is None:
            yield _truncated(path, line_no)
            return
        text = _decode(path, line_no, raw)
        if isinstance(text, Quarantined):
            yield text
            continue
        # One physical line per row: a quoted newline inside a field is not supported (it is
        # quarantined as a wrong column count rather than silently merged).
        try:
            row = next(csv.reader(io.StringIO(text), delimiter=delimiter), [])
        except csv.Error:  # e.g. a NUL byte
            yield Quarantined(str(path), line_no, "invalid_csv_row", text)
            continue
        if header is None:
            header = row
            mapped = src.content_fields()
            if len(mapped) == 1 and src.text_field not in header:
                raise UserError(f"{path}:1: header has no '{src.text_field}' column (columns: {', '.join(header)}); set text_field")
            if not set(mapped.values()) & set(header):
                raise UserError(f"{path}:1: header has none of the mapped columns {', '.join(mapped.values())} "
                                f"(columns: {', '.join(header)}); set text_field, image_field, …")
            continue
        if not row:
            yield Quarantined(str(path), line_no, "blank_line", text)
            continue
        if len(row) != len(header):
            yield Quarantined(str(path), line_no, "wrong_column_count", text)
            continue
        yield _from_fields(path, line_no, dict(zip(header, row)), src, text)


def _txt(path: Path, src: SourceConfig, delimiter: str = ",") -> Iterator[Item]:
    for line_no, raw in _open_lines(path):
        if raw is None:
            yield _truncated(path, line_no)
            return
        text = _decode(path, line_no, raw)
        if isinstance(text, Quarantined):
            yield text
        elif not text.strip():
            yield Quarantined(str(path), line_no, "empty_text", text)
        else:
            yield Record(f"{path.name}:{line_no}", text, None, str(path), line_no)


def _txt_doc(path: Path, src: SourceConfig, delimiter: str = ",") -> Iterator[Item]:
    """The whole file is one document (line 1)."""
    try:
        with _open_binary(path) as f:
            raw = f.read()
    except (EOFError, OSError, ValueError):
        yield _truncated(path, 1)
        return
    text = _decode(path, 1, raw)
    if isinstance(text, Quarantined):
        yield text
    elif not text.strip():
        yield Quarantined(str(path), 1, "empty_text", text)
    else:
        yield Record(path.name, text, None, str(path), 1)


def _image_folder(path: Path, src: SourceConfig, delimiter: str = ",") -> Iterator[Item]:
    """One sub-folder per class, its name the label: path/<label>/<image>. Files sorted, so ids are stable;
    the 'line' of a record is its position in that order. A file without an image suffix is quarantined; with
    check_images (the data stage) so is one that does not decode."""
    from trainforge.vision.images import is_image_file

    n = 0
    for class_dir in sorted(p for p in path.iterdir() if p.is_dir()):
        for f in sorted(class_dir.rglob("*")):
            if not f.is_file():
                continue
            n += 1
            if not is_image_file(f):
                yield Quarantined(str(f), n, "not_an_image_file", f.name)
                continue
            yield Record(f"{class_dir.name}/{f.relative_to(class_dir)}", None, class_dir.name, str(path), n, image=str(f.resolve()))


def _rows(path: Path, batches) -> Iterator[tuple[int, dict]]:
    row = 0
    for batch in batches:
        for obj in batch.to_pylist():
            row += 1
            yield row, obj


def _parquet(path: Path, src: SourceConfig, delimiter: str = ",") -> Iterator[Item]:
    """Row groups stream in batches of 8k rows; the 'line' of a record is its 1-based row number."""
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # noqa: BLE001 — pyarrow raises several types for a broken file
        raise UserError(f"{path}: not a readable Parquet file ({e})") from None
    yield from _arrow_rows(path, _rows(path, pf.iter_batches(batch_size=8192)), src)


def _hf_dir(path: Path, src: SourceConfig, delimiter: str = ",") -> Iterator[Item]:
    """A `datasets` save_to_disk directory: Arrow stream files listed in state.json (every split of a DatasetDict)."""
    import pyarrow as pa

    if (path / "dataset_dict.json").is_file():
        splits = json.loads((path / "dataset_dict.json").read_text())["splits"]
        for split in splits:
            yield from _hf_dir(path / split, src)
        return
    state = path / "state.json"
    if not state.is_file():
        raise UserError(f"{path}: a directory source must be a Hugging Face datasets directory (save_to_disk); no state.json")
    for entry in json.loads(state.read_text())["_data_files"]:
        arrow = path / entry["filename"]
        with pa.memory_map(str(arrow)) as source:
            reader = pa.ipc.open_stream(source)
            yield from _arrow_rows(arrow, _rows(arrow, reader), src)


def _arrow_rows(path: Path, rows, src: SourceConfig) -> Iterator[Item]:
    for line_no, obj in rows:
        yield _from_fields(path, line_no, obj, src, json.dumps(obj, ensure_ascii=False, default=str))


def write_jsonl(path: Path, rows, append: bool = False) -> int:
    n = 0
    with open(path, "a" if append else "w", encoding="utf-8", errors="replace") as f:  # replace: a lone surrogate in a metadata field
        for r in rows:
            f.write(json.dumps(r if isinstance(r, dict) else r.to_json(), ensure_ascii=False, default=str) + "\n")
            n += 1
    return n


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
