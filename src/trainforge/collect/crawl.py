"""A polite web crawl: Scrapy in a child process (crawl_child), main text by trafilatura.

Scrapy run from a library gets ROBOTSTXT_OBEY=False, no download delay and 8 concurrent requests per
domain. `polite_settings` sets each politeness knob explicitly, so a crawl from trainforge:

    obeys robots.txt (for its own USER_AGENT, which names trainforge)
    stays on allowed_domains (the start URLs' hosts by default)
    stops at DEPTH_LIMIT links from a start page and after CLOSESPIDER_PAGECOUNT responses
    waits DOWNLOAD_DELAY between requests to a domain, stretched by AutoThrottle when the site slows
    sends one request per domain at a time
    keeps its queue and seen-set in JOBDIR, so a stopped crawl (Ctrl-C, the page limit) resumes

    sources/<name>/pages.jsonl   every response: url, status, content type, fetch time, body
    sources/<name>/job/          Scrapy's JOBDIR
    sources/<name>/scrapy_stats.json, scrapy.log, state.json, child.pid (SIGINT it to stop the crawl gracefully)

benchmarks/collect.py measures it against Scrapy's defaults on a local site.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

from trainforge.collect.config import CrawlSource
from trainforge.collect.output import Collected
from trainforge.errors import UserError
from trainforge.files import write_json_atomic


def polite_settings(cfg: CrawlSource, workdir: Path, pages_left: int) -> dict:
    """The Scrapy settings of a trainforge crawl: every politeness setting named, none left to a default."""
    return {
        "ROBOTSTXT_OBEY": True,
        "USER_AGENT": cfg.user_agent,
        "DEPTH_LIMIT": cfg.max_depth,
        # robots.txt is a response too (one per start host, fetched again on a resume): max_pages counts pages
        "CLOSESPIDER_PAGECOUNT": max(pages_left, 1) + len({urlparse(u).netloc for u in cfg.start_urls}),
        "DOWNLOAD_DELAY": cfg.download_delay,
        "AUTOTHROTTLE_ENABLED": cfg.autothrottle,
        "AUTOTHROTTLE_START_DELAY": cfg.download_delay,  # Scrapy's default start is 5 s whatever DOWNLOAD_DELAY says
        "AUTOTHROTTLE_MAX_DELAY": max(60.0, cfg.download_delay),
        "AUTOTHROTTLE_TARGET_CONCURRENCY": 1.0,
        "CONCURRENT_REQUESTS_PER_DOMAIN": cfg.concurrent_requests_per_domain,
        # the engine hands the downloader up to CONCURRENT_REQUESTS (16) requests, and those in hand are still
        # fetched after CLOSESPIDER_PAGECOUNT closes the spider: no more in hand than can be in flight keeps the
        # page limit exact
        "CONCURRENT_REQUESTS": cfg.concurrent_requests_per_domain * max(1, len(allowed_domains(cfg))),
        "JOBDIR": str(workdir / "job"),
        **_common_settings(cfg, workdir),
    }


def _common_settings(cfg: CrawlSource, workdir: Path) -> dict:
    """What a crawl needs whatever its politeness: error pages reach the spider (and the funnel), a log file."""
    return {
        "HTTPERROR_ALLOW_ALL": True,  # a 404 is fetched and counted (reason http_404), not silently filtered
        "DOWNLOAD_TIMEOUT": cfg.timeout_s,
        "RETRY_TIMES": cfg.retry_times,
        "TELNETCONSOLE_ENABLED": False,
        "LOG_FILE": str(workdir / "scrapy.log"),
        "LOG_LEVEL": "INFO",
        "DEPTH_STATS_VERBOSE": True,
    }


def allowed_domains(cfg: CrawlSource) -> list[str]:
    return cfg.allowed_domains or sorted({urlparse(u).hostname for u in cfg.start_urls})


def run_child(spec: dict, workdir: Path, timeout_s: float | None = None) -> dict:
    """Run one crawl in a fresh interpreter; returns Scrapy's stats. Ctrl-C reaches the child too (same
    process group): Scrapy closes gracefully and JOBDIR keeps the queue."""
    workdir.mkdir(parents=True, exist_ok=True)
    spec = {**spec, "pages": str(workdir / "pages.jsonl"), "stats": str(workdir / "scrapy_stats.json")}
    spec_path = workdir / "spec.json"
    spec_path.write_text(json.dumps(spec, indent=1))
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[2])  # the directory holding the trainforge package
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    try:
        import scrapy  # noqa: F401 — a missing Scrapy is a sentence here, not a traceback in the child
    except ImportError:
        raise UserError("crawling needs Scrapy and trafilatura: pip install 'trainforge[crawl]'") from None
    stats_path = Path(spec["stats"])
    stats_path.unlink(missing_ok=True)
    # Popen, not subprocess.run: run() kills the child on Ctrl-C, and a killed Scrapy never writes its
    # JOBDIR queue. Here the child gets SIGINT (a graceful stop that saves the queue) and we wait for it.
    with open(workdir / "child.stderr", "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "trainforge.collect.crawl_child", str(spec_path)], env=env,
                                stdout=subprocess.DEVNULL, stderr=err)
        (workdir / "child.pid").write_text(str(proc.pid))  # whoever must stop the crawl sends SIGINT to this pid
        try:
            proc.wait(timeout=timeout_s)
        except BaseException:  # KeyboardInterrupt, a timeout: stop it gracefully, then re-raise
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise
    if proc.returncode != 0 or not stats_path.is_file():
        tail = (workdir / "child.stderr").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"the crawl process failed (exit {proc.returncode}); see {workdir / 'scrapy.log'}\n{tail}")
    return json.loads(stats_path.read_text())


def _resume_key(cfg: CrawlSource) -> str:
    # max_pages is left out: raising it and rerunning continues the same crawl
    return hashlib.sha256(json.dumps(cfg.model_dump(mode="json", exclude={"max_pages"}), sort_keys=True).encode()).hexdigest()


def _pages_so_far(path: Path) -> int:
    if not path.is_file():
        return 0
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def crawl(name: str, cfg: CrawlSource, workdir: Path, resume: bool = True) -> dict:
    """Crawl (or resume an unfinished crawl of the same source); returns {"stats", "resumed"}."""
    state_path = workdir / "state.json"
    state = json.loads(state_path.read_text()) if state_path.is_file() else {}
    resumed = resume and state.get("key") == _resume_key(cfg) and not state.get("done")
    if not resumed and workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(state_path, {"key": _resume_key(cfg), "done": False})
    pages_left = cfg.max_pages - _pages_so_far(workdir / "pages.jsonl")
    if pages_left <= 0:
        stats = json.loads((workdir / "scrapy_stats.json").read_text()) if (workdir / "scrapy_stats.json").is_file() else {}
    else:
        spec = {"settings": polite_settings(cfg, workdir, pages_left), "start_urls": cfg.start_urls,
                "allowed_domains": allowed_domains(cfg), "allow": cfg.allow, "deny": cfg.deny}
        stats = run_child(spec, workdir)
    # finished: the queue ran dry; closespider_pagecount / shutdown: requests are left in JOBDIR
    write_json_atomic(state_path, {"key": _resume_key(cfg), "done": stats.get("finish_reason") == "finished",
                                   "finish_reason": stats.get("finish_reason")})
    return {"stats": stats, "resumed": bool(resumed)}


def emit_pages(name: str, pages: Path, out: Collected) -> None:
    """Every fetched response becomes a record (main text) or a failure with its reason."""
    from trainforge.collect.extract import extract_page, is_html

    seen: set[str] = set()
    with open(pages, encoding="utf-8") as f:
        for line in f:
            page = json.loads(line)
            url = page["url"]
            if url in seen:  # a resumed crawl never refetches, but a page cut mid-write by a kill may repeat
                continue
            seen.add(url)
            if not 200 <= page["status"] < 300:
                out.fail(name, url, f"http_{page['status']}")
            elif page["body"] is None or not is_html(page["content_type"]):
                out.fail(name, url, "not_html", content_type=page["content_type"])
            else:
                doc, reason = extract_page(page["body"], url)
                if doc is None:
                    out.fail(name, url, reason)
                else:
                    out.keep(name, f"{name}:{url}", doc.pop("text"), None, url=url, fetched_at=page["fetched_at"],
                             depth=page["depth"], **doc)


SCRAPY_COUNTS = {"robotstxt/forbidden": "robots_forbidden", "offsite/filtered": "offsite_filtered",
                 "request_depth_max": "depth_max", "downloader/request_count": "requests",
                 "retry/count": "retries", "depth/request_ignored_count": "depth_limited",
                 "finish_reason": "finish_reason"}
"""Scrapy's stats shown beside the funnel: what was not fetched (and why) is counted too."""


def collect_crawl(name: str, cfg: CrawlSource, workdir: Path, out: Collected, key: str, resume: bool) -> None:
    t0 = time.perf_counter()
    result = crawl(name, cfg, workdir, resume)
    pages = workdir / "pages.jsonl"
    if pages.is_file():
        emit_pages(name, pages, out)
    st = result["stats"]
    out.note(name, resumed=result["resumed"], **{ours: st[k] for k, ours in SCRAPY_COUNTS.items() if k in st})
    out.seconds[name] += time.perf_counter() - t0
