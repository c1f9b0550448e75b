"""WARC files (warcio), the way Common-Crawl pipelines ingest the web: each `response` record's HTTP
payload goes through the same extraction as a crawled page. Request, metadata and warcinfo records
carry no document and are counted (`other_records`), not fetched."""

from __future__ import annotations

import time

from trainforge.collect.config import WarcSource
from trainforge.collect.output import Collected
from trainforge.errors import UserError


def collect_warc(name: str, cfg: WarcSource, out: Collected, key: str) -> None:
    try:
        from warcio.archiveiterator import ArchiveIterator
        from warcio.exceptions import ArchiveLoadFailed
    except ImportError:
        raise UserError("reading WARC files needs warcio: pip install 'trainforge[collect]'") from None
    from trainforge.collect.extract import extract_page, is_html
    from trainforge.collect.files import matched_paths

    t0 = time.perf_counter()
    other = 0
    paths = matched_paths(cfg.glob, f"{key}.glob")
    for path in paths:
        with open(path, "rb") as f:
            try:
                for n, rec in enumerate(ArchiveIterator(f), start=1):
                    if rec.rec_type != "response":
                        other += 1
                        continue
                    url = rec.rec_headers.get_header("WARC-Target-URI") or f"{path}#{n}"
                    fetched_at = rec.rec_headers.get_header("WARC-Date")
                    status = int(rec.http_headers.get_statuscode()) if rec.http_headers else None
                    ctype = rec.http_headers.get_header("Content-Type") if rec.http_headers else None
                    body = rec.content_stream().read()
                    if status is not None and not 200 <= status < 300:
                        out.fail(name, url, f"http_{status}", warc=str(path))
                    elif not is_html(ctype):
                        out.fail(name, url, "not_html", content_type=ctype, warc=str(path))
                    else:
                        doc, reason = extract_page(body, url)
                        if doc is None:
                            out.fail(name, url, reason, warc=str(path))
                        else:
                            out.keep(name, f"{name}:{url}", doc.pop("text"), None, url=url, fetched_at=fetched_at,
                                     warc=str(path), warc_record_id=rec.rec_headers.get_header("WARC-Record-ID"), **doc)
            except ArchiveLoadFailed as e:
                out.fail(name, str(path), "unreadable_warc", error=str(e)[:200])
    out.note(name, files=len(paths), other_records=other)
    out.seconds[name] += time.perf_counter() - t0
