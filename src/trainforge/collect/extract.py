"""Main text out of an HTML page (trafilatura), shared by the crawl, WARC files and .html files.

trafilatura drops navigation, footers and boilerplate and finds the title and the publication date
(htmldate); what it cannot find a text in is counted, never silently skipped.
"""

from __future__ import annotations

import json

HTML_TYPES = ("text/html", "application/xhtml+xml")


def _trafilatura():
    try:
        import trafilatura
    except ImportError:
        from trainforge.errors import UserError

        raise UserError("extracting web pages needs trafilatura: pip install 'trainforge[crawl]'") from None
    return trafilatura


def is_html(content_type: str | None) -> bool:
    """A response worth extracting: an HTML content type (or none given, as in some WARC files)."""
    if not content_type:
        return True
    return content_type.split(";")[0].strip().lower() in HTML_TYPES


def extract_page(html: str | bytes, url: str | None) -> tuple[dict | None, str | None]:
    """({"text", "title", "date", "language"}, None) or (None, reason): `no_main_text`, `unparseable_html`."""
    trafilatura = _trafilatura()
    if isinstance(html, bytes):
        html = html.decode("utf-8", "replace")  # trafilatura also sniffs a <meta charset>; utf-8 is the common case
    if not html.strip():
        return None, "empty_body"
    try:
        raw = trafilatura.extract(html, url=url, output_format="json", with_metadata=True, include_comments=False,
                                  favor_precision=False, deduplicate=False)
    except Exception:  # noqa: BLE001 — lxml raises several kinds on a broken document
        return None, "unparseable_html"
    if not raw:
        return None, "no_main_text"
    doc = json.loads(raw)
    text = (doc.get("text") or "").strip()
    if not text:
        return None, "no_main_text"
    return {"text": text, "title": doc.get("title"), "date": doc.get("date"), "language": doc.get("language")}, None
