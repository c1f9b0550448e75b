"""The HTTP JSON API source against a real local server that paginates three ways and fails on purpose."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from trainforge.collect.api import ApiStopped, retry_after_seconds
from trainforge.collect.config import CollectConfig
from trainforge.collect.stage import collect
from trainforge.errors import UserError

PAGES = 3
PER_PAGE = 3
TOKEN = "s3cret-token-value"


def _items(page: int) -> list[dict]:
    if page > PAGES:
        return []
    return [{"id": f"p{page}-{k}", "body": f"第{page}页的第{k}条评论，质量很好", "meta": {"stars": k},
             "sentiment": "positive" if k % 2 else "negative"} for k in range(PER_PAGE)]


class Api:
    """Serves /cursor, /page and /link; `fail[(kind, page)]` is a list of (status, Retry-After) answered first."""

    def __init__(self):
        self.log: list[tuple[str, int]] = []
        self.fail: dict[tuple[str, int], list[tuple[int, str | None]]] = {}
        self.auth_seen: list[str | None] = []

    def __enter__(self):
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                url = urlparse(self.path)
                q = {k: v[0] for k, v in parse_qs(url.query).items()}
                kind = url.path.strip("/")
                api.auth_seen.append(self.headers.get("Authorization"))
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    return self._send(401, {"error": "bad token"})
                page = int(q.get("page", 1)) if kind in ("page", "link") else int(q.get("cursor", "c1")[1:])
                api.log.append((kind, page))
                script = api.fail.get((kind, page))
                if script:
                    status, after = script.pop(0)
                    return self._send(status, {"error": "try later"}, {"Retry-After": after} if after else {})
                items = _items(page)
                if kind == "cursor":
                    return self._send(200, {"data": items, "meta": {"next": f"c{page + 1}" if page < PAGES else None}})
                if kind == "page":
                    return self._send(200, {"data": items})
                link = {"Link": f'</link?page={page + 1}>; rel="next"'} if page < PAGES else {}
                return self._send(200, {"data": items}, link)

            def _send(self, status, obj, headers=None):
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def api(monkeypatch):
    monkeypatch.setenv("TEST_API_TOKEN", TOKEN)
    with Api() as a:
        yield a


def _cfg(api: Api, kind: str, **over) -> CollectConfig:
    pagination = {"cursor": {"kind": "cursor", "cursor": "meta.next"}, "page": {"kind": "page"}, "link": {"kind": "link"}}[kind]
    src = {"url": f"{api.url}/{kind}", "records": "data", "fields": {"text": "body", "label": "sentiment", "id": "id", "stars": "meta.stars"},
           "pagination": pagination, "auth": {"env": "TEST_API_TOKEN"}, "rate_limit": None,
           "retry": {"backoff_s": 0.01, "max_retries": 3}} | over
    return CollectConfig(sources=[{"name": "reviews", "api": src}])


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in open(out / "records.jsonl", encoding="utf-8")]


@pytest.mark.parametrize("kind", ["cursor", "page", "link"])
def test_each_pagination_kind_collects_every_page_once(api, tmp_path, kind):
    stats = collect(_cfg(api, kind), tmp_path)
    rows = _records(tmp_path)
    assert [r["id"] for r in rows] == [f"reviews:p{p}-{k}" for p in range(1, PAGES + 1) for k in range(PER_PAGE)]
    assert rows[0]["label"] == "negative" and rows[1]["stars"] == 1 and len(rows[0]["content_sha256"]) == 64
    # page-number pagination learns the end from an empty page; the other two from the API
    expected = [(kind, p) for p in range(1, PAGES + (2 if kind == "page" else 1))]
    assert api.log == expected
    assert stats["fetched"] == stats["kept"] == PAGES * PER_PAGE


def test_retries_honour_retry_after_then_back_off_exponentially(api, tmp_path):
    api.fail[("cursor", 2)] = [(429, "1"), (503, None), (502, None)]
    stats = collect(_cfg(api, "cursor"), tmp_path)
    src = stats["sources"]["reviews"]
    assert src["retries"] == 3 and src["retry_waits_s"] == [1.0, 0.02, 0.04]  # Retry-After: 1, then 0.01·2^1, 0.01·2^2
    assert api.log.count(("cursor", 2)) == 4 and stats["kept"] == PAGES * PER_PAGE


def test_retry_after_as_an_http_date_and_a_too_long_wait():
    assert retry_after_seconds("120") == 120.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past: no wait
    assert retry_after_seconds("soon") is None


def test_an_interrupted_collection_resumes_at_its_saved_cursor(api, tmp_path):
    api.fail[("cursor", 3)] = [(500, None)] * 10  # page 3 keeps failing: the run gives up after its retries
    with pytest.raises(ApiStopped, match="rerun to resume"):
        collect(_cfg(api, "cursor", retry={"backoff_s": 0.01, "max_retries": 1}), tmp_path)
    state = json.loads((tmp_path / "sources" / "reviews" / "state.json").read_text())
    assert state["pages"] == 2 and state["next"]["params"]["cursor"] == "c3" and not state["done"]
    # a page appended after the last saved state (a kill mid-write) is cut off on resume
    with open(tmp_path / "sources" / "reviews" / "items.jsonl", "a") as f:
        f.write('{"page": 3, "url": "x", "fetched_at": "t", "item": {"id": "half')
    api.fail.clear()
    api.log.clear()
    stats = collect(_cfg(api, "cursor", retry={"backoff_s": 0.01, "max_retries": 1}), tmp_path)
    assert api.log == [("cursor", 3)]  # pages 1 and 2 are not fetched again
    assert [r["id"] for r in _records(tmp_path)] == [f"reviews:p{p}-{k}" for p in range(1, 4) for k in range(PER_PAGE)]
    assert stats["sources"]["reviews"]["resumed"] == 1


def test_a_changed_source_starts_over(api, tmp_path):
    collect(_cfg(api, "page"), tmp_path)
    api.log.clear()
    collect(_cfg(api, "page", params={"lang": "zh"}), tmp_path)
    assert api.log[0] == ("page", 1)


def test_the_token_comes_from_the_environment_and_is_written_nowhere(api, tmp_path, monkeypatch):
    collect(_cfg(api, "link"), tmp_path)
    assert set(api.auth_seen) == {f"Bearer {TOKEN}"}
    for f in tmp_path.rglob("*"):
        if f.is_file():
            assert TOKEN not in f.read_text(encoding="utf-8", errors="replace"), f
    monkeypatch.delenv("TEST_API_TOKEN")
    with pytest.raises(UserError, match="TEST_API_TOKEN is not set"):
        collect(_cfg(api, "link"), tmp_path / "again")


def test_a_wrong_token_is_a_user_error_naming_the_variable(api, tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_API_TOKEN", "wrong")
    with pytest.raises(UserError, match=r"HTTP 401 \(is \$TEST_API_TOKEN right\?\)"):
        collect(_cfg(api, "cursor"), tmp_path)


def test_rate_limit_spaces_requests(api, tmp_path):
    import time

    t0 = time.monotonic()
    collect(_cfg(api, "cursor", rate_limit=20.0), tmp_path)
    assert time.monotonic() - t0 >= 2 / 20  # three requests: two waits of 1/20 s (a lower bound, not a timing threshold)


def test_records_without_a_label_are_counted_not_lost(api, tmp_path):
    stats = collect(_cfg(api, "cursor", fields={"text": "body", "label": "nope"}), tmp_path)
    assert stats["kept"] == 0 and stats["failed"] == {"missing_label": PAGES * PER_PAGE}
    assert sum(1 for _ in open(tmp_path / "failed.jsonl")) == PAGES * PER_PAGE
