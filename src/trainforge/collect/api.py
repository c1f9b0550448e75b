"""An HTTP JSON API, page by page (httpx): pagination, retries with backoff, a rate limit, an auth header
from the environment, and a cursor saved after every page so an interrupted collection resumes.

    request ──▶ 429 / 5xx / connection error? ── wait (Retry-After, else backoff·2^attempt) ──▶ again
       │ 2xx
       ▼
    items (JMESPath `records`) ─▶ append to sources/<name>/items.jsonl ─▶ state.json {next request, bytes}
                                                                    (written atomically after the append)

A crash between the append and the state write leaves a tail the next run cuts off (state.json names
the byte offset of the last whole page), so no item is fetched twice into the output or lost. The
state is tied to the source's config hash: change the source and it starts over.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urljoin

from trainforge.collect.config import ApiSource
from trainforge.collect.output import Collected, now_iso
from trainforge.errors import UserError
from trainforge.files import write_json_atomic


class ApiStopped(UserError):
    """The API kept failing (or asked us to wait too long): the cursor is saved, a rerun resumes."""


def _jmes(expr: str, key: str):
    import jmespath
    from jmespath.exceptions import ParseError

    try:
        return jmespath.compile(expr)
    except ParseError as e:
        raise UserError(f"{key}: '{expr}' is not a JMESPath expression ({e})") from None


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP date (RFC 9110 §10.2.3); None when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


class RateLimit:
    """At most `per_second` requests per second: each request waits for its slot."""

    def __init__(self, per_second: float | None):
        self.interval = 1.0 / per_second if per_second else 0.0
        self.next_at = 0.0

    def wait(self) -> None:
        now = time.monotonic()
        if now < self.next_at:
            time.sleep(self.next_at - now)
        self.next_at = max(now, self.next_at) + self.interval


def config_sha256(cfg) -> str:
    return hashlib.sha256(json.dumps(cfg.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


class ApiCollector:
    def __init__(self, name: str, cfg: ApiSource, workdir: Path, key: str, resume: bool = True):
        self.name, self.cfg, self.workdir, self.key = name, cfg, workdir, key
        self.records_expr = _jmes(cfg.records, f"{key}.records")
        self.cursor_expr = _jmes(cfg.pagination.cursor, f"{key}.pagination.cursor")
        self.field_exprs = {f: _jmes(e, f"{key}.fields.{f}") for f, e in cfg.fields.items()}
        self.items_path = workdir / "items.jsonl"
        self.state_path = workdir / "state.json"
        self.limit = RateLimit(cfg.rate_limit)
        self.retries = 0
        self.waits: list[float] = []
        self.requests = 0
        self.state = self._load_state(resume)

    # ------------------------------------------------------------------ state

    def _fresh_state(self) -> dict:
        p = self.cfg.pagination
        params = dict(self.cfg.params)
        if p.kind == "page":
            params[p.page_param] = p.start_page
        if p.page_size_param and p.page_size:
            params[p.page_size_param] = p.page_size
        return {"config_sha256": config_sha256(self.cfg), "next": {"url": self.cfg.url, "params": params},
                "pages": 0, "items": 0, "bytes": 0, "done": False, "resumed": 0}

    def _load_state(self, resume: bool) -> dict:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if resume and self.state_path.is_file():
            state = json.loads(self.state_path.read_text())
            # only an unfinished collection of the same source resumes; a finished one is fetched afresh
            if state.get("config_sha256") == config_sha256(self.cfg) and not state["done"]:
                with open(self.items_path, "ab") as f:  # cut a page appended after the last saved state
                    f.truncate(state["bytes"])
                state["resumed"] += 1
                return state
        self.items_path.write_bytes(b"")
        state = self._fresh_state()
        write_json_atomic(self.state_path, state)
        return state

    # ------------------------------------------------------------------ one request

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", **self.cfg.headers}
        auth = self.cfg.auth
        if auth is not None:
            token = os.environ.get(auth.env)
            if not token:
                raise UserError(f"{self.key}.auth.env: the environment variable {auth.env} is not set (it holds the API token)")
            headers[auth.header] = f"{auth.scheme} {token}" if auth.scheme else token
        return headers

    def _backoff(self, attempt: int) -> float:
        r = self.cfg.retry
        return min(r.backoff_s * 2 ** attempt, r.max_backoff_s)

    def _send(self, client, request: dict):
        import httpx

        r = self.cfg.retry
        url = request["url"]
        for attempt in range(r.max_retries + 1):
            self.limit.wait()
            self.requests += 1
            try:
                resp = client.request(self.cfg.method, url, params=request["params"] or None, headers=self._headers(),
                                      json=self.cfg.body if self.cfg.method == "POST" else None)
            except httpx.TransportError as e:
                why, wait = f"{type(e).__name__}", self._backoff(attempt)
            else:
                if resp.status_code == 429 or resp.status_code >= 500:
                    after = retry_after_seconds(resp.headers.get("Retry-After"))
                    why, wait = f"HTTP {resp.status_code}", after if after is not None else self._backoff(attempt)
                elif resp.status_code >= 400:
                    hint = f" (is ${self.cfg.auth.env} right?)" if resp.status_code in (401, 403) and self.cfg.auth else ""
                    raise UserError(f"{self.key}: {url} answered HTTP {resp.status_code}{hint}: {resp.text[:200]}")
                else:
                    return resp
            if attempt == r.max_retries:
                raise ApiStopped(f"{self.key}: {url} still failing ({why}) after {r.max_retries} retries; stopped at page "
                                 f"{self.state['pages'] + 1} with {self.state['items']} items saved — rerun to resume there")
            if wait > r.max_retry_after_s:
                raise ApiStopped(f"{self.key}: {url} asks to wait {wait:.0f}s ({why}), more than retry.max_retry_after_s "
                                 f"({r.max_retry_after_s:.0f}); the cursor is saved — rerun later to resume")
            self.retries += 1
            self.waits.append(round(wait, 3))
            time.sleep(wait)
        raise AssertionError("unreachable")

    def _next_request(self, resp, body, items: list) -> dict | None:
        p = self.cfg.pagination
        if p.max_pages is not None and self.state["pages"] >= p.max_pages:
            return None
        params = dict(self.state["next"]["params"])
        if p.kind == "cursor":
            cursor = self.cursor_expr.search(body)
            if cursor in (None, "") or not items:
                return None
            return {"url": self.state["next"]["url"], "params": params | {p.cursor_param: cursor}}
        if p.kind == "page":
            if not items:
                return None
            return {"url": self.state["next"]["url"], "params": params | {p.page_param: int(params[p.page_param]) + 1}}
        if p.kind == "link":
            nxt = resp.links.get("next", {}).get("url")
            # the Link URL carries its own query string: send it as given
            return {"url": urljoin(str(resp.url), nxt), "params": {}} if nxt else None
        return None

    # ------------------------------------------------------------------ the loop

    def fetch(self) -> None:
        """Fetch pages until the API has no more (or max_pages), saving the cursor after each."""
        import httpx

        with httpx.Client(timeout=self.cfg.timeout_s, follow_redirects=True) as client, \
                open(self.items_path, "ab") as sink:
            while not self.state["done"]:
                resp = self._send(client, self.state["next"])
                try:
                    body = resp.json()
                except (json.JSONDecodeError, UnicodeDecodeError):
                    raise ApiStopped(f"{self.key}: {resp.url} answered HTTP {resp.status_code} with a body that is not JSON "
                                     f"({resp.text[:120]!r}); the cursor is saved") from None
                items = self.records_expr.search(body)
                if items is None:
                    items = []
                if not isinstance(items, list):
                    raise UserError(f"{self.key}.records: '{self.cfg.records}' selects a {type(items).__name__}, not a list of records")
                fetched_at = now_iso()
                page = self.state["pages"] + 1
                for item in items:
                    sink.write((json.dumps({"page": page, "url": str(resp.url), "fetched_at": fetched_at, "item": item},
                                           ensure_ascii=False) + "\n").encode("utf-8"))
                sink.flush()
                nxt = self._next_request(resp, body, items) if items or self.cfg.pagination.kind == "link" else None
                self.state.update(pages=page, items=self.state["items"] + len(items), bytes=sink.tell(),
                                  next=nxt or self.state["next"], done=nxt is None)
                write_json_atomic(self.state_path, self.state)

    def emit(self, out: Collected) -> None:
        """Map every saved item (this run's and the interrupted runs') to a record."""
        with open(self.items_path, encoding="utf-8") as f:
            for n, line in enumerate(f, start=1):
                row = json.loads(line)
                item = row["item"]
                where = f"{row['url']}#{n}"
                if not isinstance(item, dict):
                    out.fail(self.name, where, "not_an_object", raw=json.dumps(item, ensure_ascii=False))
                    continue
                got = {f: e.search(item) for f, e in self.field_exprs.items()}
                text, label, rid = got.pop("text"), got.pop("label", None), got.pop("id", None)
                if "label" in self.field_exprs and (label is None or isinstance(label, (dict, list)) or str(label).strip() == ""):
                    out.fail(self.name, where, "missing_label", raw=json.dumps(item, ensure_ascii=False))
                    continue
                out.keep(self.name, f"{self.name}:{rid if rid is not None else n}", text, None if label is None else str(label),
                         url=row["url"], fetched_at=row["fetched_at"], page=row["page"], **got)
        out.note(self.name, pages=self.state["pages"], requests=self.requests, retries=self.retries, retry_waits_s=self.waits,
                 resumed=self.state["resumed"])


def collect_api(name: str, cfg: ApiSource, workdir: Path, out: Collected, key: str, resume: bool) -> None:
    t0 = time.perf_counter()
    collector = ApiCollector(name, cfg, workdir, key, resume)
    collector.fetch()
    collector.emit(out)
    out.seconds[name] += time.perf_counter() - t0
