"""Config of the collect stage: where raw data comes from (files, an HTTP JSON API, a web crawl, WARC files).

    collect:
      sources:
        - {name: notes, files: {glob: "raw/**/*.jsonl", label_field: label}}
        - {name: tickets, api: {url: "https://api.example.com/v1/tickets", records: "data",
                                fields: {text: body, label: category}, pagination: {kind: cursor, cursor: "meta.next"},
                                auth: {env: TICKETS_TOKEN}}}
        - {name: docs, crawl: {start_urls: ["https://docs.example.com/"], max_depth: 2, max_pages: 200}}
        - {name: cc, warc: {glob: "crawl/*.warc.gz"}}

Each source writes records the data stage reads (collect/records.jsonl); the data stage takes it as one more
source when this stage is in the config.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import field_validator, model_serializer, model_validator

from trainforge.section import Section


class FilesSource(Section):
    """Local files matched by a glob: any format the data stage reads, plus .html/.htm (main text extracted)."""

    glob: str
    """A path or a glob (`**` recurses), relative to the working directory, e.g. raw/**/*.jsonl."""
    format: Literal["auto", "jsonl", "csv", "tsv", "parquet", "txt", "txt-doc", "html"] = "auto"
    """auto: from each file's suffix (.html/.htm: trafilatura's main text)."""
    text_field: str = "text"
    """Field holding the text (jsonl/csv/tsv/parquet)."""
    label_field: str | None = None
    """Field holding a label; null for unlabelled text."""
    id_field: str | None = None
    """Field holding a record id; null: file:line."""


class AuthConfig(Section):
    """An auth header whose value is read from an environment variable when a request is made; the
    secret itself is never in the config, the state file, the logs or the outputs."""

    env: str
    """Name of the environment variable holding the token, e.g. TICKETS_TOKEN."""
    header: str = "Authorization"
    """Header the token goes in."""
    scheme: str | None = "Bearer"
    """Prefix before the token (`Bearer <token>`); null sends the token alone (e.g. X-API-Key)."""


class PaginationConfig(Section):
    kind: Literal["none", "cursor", "page", "link"] = "none"
    """cursor: a value in the body names the next page; page: ?page=1,2,… until an empty page; link: the `Link: <…>; rel="next"` header."""
    cursor: str = "next_cursor"
    """cursor: JMESPath in the response body to the next cursor (null/missing/empty ends)."""
    cursor_param: str = "cursor"
    """cursor: query parameter the cursor is sent in."""
    page_param: str = "page"
    """page: query parameter of the page number."""
    start_page: int = 1
    """page: number of the first page."""
    page_size_param: str | None = None
    """Query parameter of the page size (sent with `page_size`); null sends none."""
    page_size: int | None = None
    """Records per page to ask for."""
    max_pages: int | None = None
    """Stop after this many pages (in total, across resumes); null: until the API says there is no more."""


class RetryConfig(Section):
    """Retries on 429, 5xx and connection errors with exponential backoff; a Retry-After header wins."""

    max_retries: int = 5
    """Retries per request before the collection stops (its cursor is saved: the next run resumes there)."""
    backoff_s: float = 1.0
    """First wait; doubled on each retry (1, 2, 4, … seconds)."""
    max_backoff_s: float = 60.0
    """Cap of the exponential wait."""
    max_retry_after_s: float = 600.0
    """A Retry-After longer than this stops the collection (resumable) instead of sleeping."""


class ApiSource(Section):
    """An HTTP JSON API, page by page, resumable (httpx)."""

    url: str
    """The first request's URL."""
    method: Literal["GET", "POST"] = "GET"
    """HTTP method; POST sends `body` as JSON."""
    params: dict[str, str | int | float | bool] = {}
    """Query parameters of every request."""
    headers: dict[str, str] = {}
    """Extra headers (no secrets here: use `auth`)."""
    body: dict | None = None
    """JSON body of a POST."""
    auth: AuthConfig | None = None
    """An auth header from an environment variable."""
    records: str = "@"
    """JMESPath from the response body to the list of records (`@`: the body is the list; e.g. data.items)."""
    fields: dict[str, str] = {"text": "text"}
    """Record field → JMESPath inside one API record: text (required), label, id, and any metadata to keep."""
    pagination: PaginationConfig = PaginationConfig()
    """How the next page is found."""
    retry: RetryConfig = RetryConfig()
    """Retries and backoff."""
    rate_limit: float | None = 2.0
    """At most this many requests per second; null: no limit."""
    timeout_s: float = 30.0
    """Per-request timeout."""

    @field_validator("fields")
    @classmethod
    def _has_text(cls, v: dict[str, str]) -> dict[str, str]:
        if "text" not in v:
            raise ValueError("`fields` must map `text` (the JMESPath of the text inside a record)")
        return v


DEFAULT_USER_AGENT = "trainforge/0.1 (+https://github.com/trainforge/trainforge; polite crawler: robots.txt obeyed)"


class CrawlSource(Section):
    """A polite web crawl with Scrapy in a child process; main text by trafilatura.

    Scrapy run from a library gets ROBOTSTXT_OBEY=False, no delay and 8 concurrent requests per domain;
    these are set explicitly here instead."""

    start_urls: list[str]
    """Where the crawl starts."""
    allowed_domains: list[str] | None = None
    """Domains links may lead to (subdomains included); null: the hosts of start_urls."""
    max_depth: int = 2
    """DEPTH_LIMIT: links followed from a start page (0: no limit)."""
    max_pages: int = 100
    """CLOSESPIDER_PAGECOUNT: stop after this many pages (robots.txt not counted; a request already in flight
    when the limit is reached still lands: at most concurrent_requests_per_domain more). Raising it and rerunning
    resumes the same crawl."""
    download_delay: float = 1.0
    """Seconds between requests to one domain (AutoThrottle adapts it upward under load)."""
    autothrottle: bool = True
    """AutoThrottle: adapt the delay to the server's latency."""
    concurrent_requests_per_domain: int = 1
    """Requests in flight per domain."""
    user_agent: str = DEFAULT_USER_AGENT
    """USER_AGENT: who is crawling (robots.txt rules are matched against it)."""
    allow: list[str] = []
    """Regexes a followed link's URL must match (any); empty: all."""
    deny: list[str] = []
    """Regexes that stop a link being followed."""
    timeout_s: float = 30.0
    """DOWNLOAD_TIMEOUT per request."""
    retry_times: int = 2
    """RETRY_TIMES on 5xx and connection errors."""

    @field_validator("start_urls")
    @classmethod
    def _urls(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("give at least one start URL")
        for u in v:
            if not re.match(r"https?://", u):
                raise ValueError(f"a start URL is http(s)://…, got {u!r}")
        return v


class WarcSource(Section):
    """WARC files (warcio): every `response` record through the same extraction as the crawl."""

    glob: str
    """A path or glob of .warc / .warc.gz files."""


class CollectSourceConfig(Section):
    """One source: a name and exactly one of files, api, crawl, warc."""

    name: str
    """Names the source in records (`source`), the funnel and collect/sources/<name>/."""
    files: FilesSource | None = None
    """Local files and globs."""
    api: ApiSource | None = None
    """An HTTP JSON API."""
    crawl: CrawlSource | None = None
    """A polite web crawl (Scrapy)."""
    warc: WarcSource | None = None
    """WARC files (warcio)."""

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", v):
            raise ValueError("a source name is letters, digits, _ . - (it names a folder)")
        return v

    @model_validator(mode="after")
    def _exactly_one(self) -> "CollectSourceConfig":
        got = [k for k in ("files", "api", "crawl", "warc") if getattr(self, k) is not None]
        if len(got) != 1:
            raise ValueError(f"a collect source has exactly one of files, api, crawl, warc; got {got or 'none'}")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("files", "api", "crawl", "warc") if getattr(self, k) is not None)

    @property
    def spec(self) -> Section:
        return getattr(self, self.kind)

    @model_serializer(mode="wrap")
    def _only_the_set_kind(self, handler):
        return {k: v for k, v in handler(self).items() if v is not None}


class CollectConfig(Section):
    """Fetch raw data into collect/records.jsonl (text, label, content hash, metadata) with a funnel from `fetched`."""

    sources: list[CollectSourceConfig]
    """What to collect, in order."""
    min_chars: int = 1
    """A fetched document whose text is shorter than this is counted as failed (reason: empty_text)."""
    resume: bool = True
    """An interrupted API collection or crawl continues where it stopped (its cursor / Scrapy JOBDIR)."""

    @model_validator(mode="after")
    def _unique(self) -> "CollectConfig":
        names = [s.name for s in self.sources]
        if dup := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"collect source names must be unique; repeated: {', '.join(dup)}")
        return self

    def labelled(self) -> bool:
        """Does any source map a label (then the data stage reads collect/records.jsonl with label_field=label)?"""
        for s in self.sources:
            if (s.files and s.files.label_field) or (s.api and "label" in s.api.fields):
                return True
        return False
