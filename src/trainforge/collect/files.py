"""Files and globs: every format the data stage reads (through its readers, so quarantine reasons are the same),
plus .html/.htm pages through trafilatura."""

from __future__ import annotations

import glob as globlib
import time
from pathlib import Path

from trainforge.collect.config import FilesSource
from trainforge.collect.output import Collected, now_iso
from trainforge.errors import UserError


def matched_paths(pattern: str, key: str) -> list[Path]:
    """Sorted matches of a path or glob (so a run reads files in the same order on every machine)."""
    paths = sorted(Path(p) for p in globlib.glob(pattern, recursive=True) if Path(p).is_file())
    if not paths:
        raise UserError(f"{key}: '{pattern}' matches no file")
    return paths


def collect_files(name: str, cfg: FilesSource, out: Collected, key: str) -> None:
    from trainforge.data.config import SourceConfig
    from trainforge.data.io import Record, read_source

    t0 = time.perf_counter()
    paths = matched_paths(cfg.glob, f"{key}.glob")
    for path in paths:
        fmt = cfg.format
        if fmt == "html" or (fmt == "auto" and path.suffix.lower() in (".html", ".htm")):
            _html_file(name, path, out)
            continue
        src = SourceConfig(path=str(path), format=fmt, text_field=cfg.text_field, label_field=cfg.label_field, id_field=cfg.id_field)
        for item in read_source(src):
            if isinstance(item, Record):
                row = item.to_json()
                meta = {k: v for k, v in row.items() if k not in ("id", "text", "label", "source")}
                out.keep(name, f"{name}:{item.id}", item.text, item.label, path=str(path), line=item.line, **meta)
            else:  # unreadable: the reader's reason (invalid_json, missing_label, …)
                out.fail(name, f"{item.source}:{item.line}", item.reason, raw=item.raw)
    out.note(name, files=len(paths))
    out.seconds[name] += time.perf_counter() - t0


def _html_file(name: str, path: Path, out: Collected) -> None:
    from trainforge.collect.extract import extract_page

    doc, reason = extract_page(path.read_bytes(), url=path.resolve().as_uri())
    if doc is None:
        out.fail(name, str(path), reason)
        return
    out.keep(name, f"{name}:{path.name}", doc.pop("text"), None, path=str(path), fetched_at=now_iso(), **doc)
