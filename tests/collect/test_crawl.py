"""The crawler against a site on 127.0.0.1: robots.txt, allowed domains, depth and page limits, resume.

Each crawl runs Scrapy in a child process (~3 s each: a fresh interpreter imports Scrapy and Twisted)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("scrapy", reason="the crawler needs Scrapy: pip install 'trainforge[crawl]'")
pytest.importorskip("trafilatura", reason="the crawler needs trafilatura: pip install 'trainforge[crawl]'")

from tests.collect.site import Site  # noqa: E402
from trainforge.collect.config import CollectConfig, CrawlSource  # noqa: E402
from trainforge.collect.crawl import polite_settings  # noqa: E402
from trainforge.collect.stage import collect  # noqa: E402


def _cfg(site: Site, **over) -> CollectConfig:
    crawl = {"start_urls": [site.url + "/"], "max_depth": 2, "max_pages": 50, "download_delay": 0.0} | over
    return CollectConfig(sources=[{"name": "web", "crawl": crawl}])


def test_scrapy_library_defaults_are_impolite_and_ours_say_otherwise(tmp_path):
    from scrapy.settings import default_settings as d

    # what a crawl from a library gets unless told otherwise (the reason every setting below is explicit)
    assert (d.ROBOTSTXT_OBEY, d.DOWNLOAD_DELAY, d.CONCURRENT_REQUESTS_PER_DOMAIN, d.AUTOTHROTTLE_ENABLED) == (False, 0, 8, False)
    s = polite_settings(CrawlSource(start_urls=["https://example.com/"]), tmp_path, pages_left=100)
    assert s["ROBOTSTXT_OBEY"] is True and s["CONCURRENT_REQUESTS_PER_DOMAIN"] == 1 and s["DOWNLOAD_DELAY"] == 1.0
    assert s["AUTOTHROTTLE_ENABLED"] is True and s["AUTOTHROTTLE_START_DELAY"] == 1.0 and "trainforge" in s["USER_AGENT"]
    assert s["DEPTH_LIMIT"] == 2 and s["CLOSESPIDER_PAGECOUNT"] == 101 and s["JOBDIR"] == str(tmp_path / "job")


def test_crawl_obeys_robots_domains_and_depth_and_extracts_main_text(tmp_path):
    with Site() as site:
        stats = collect(_cfg(site), tmp_path)
        log = list(site.log)
    paths = [p for _, p, _ in log]
    assert "/private/secret" not in paths  # robots.txt: Disallow: /private/
    assert all(host == "127.0.0.1" for host, _, _ in log)  # the localhost link is another domain: never requested
    assert "/deep/2" in paths and "/deep/3" not in paths  # depth 2 from the start page
    assert paths[0] == "/robots.txt" and all("trainforge" in ua for _, _, ua in log)
    assert len(paths) == len(set(paths))  # nothing fetched twice
    src = stats["sources"]["web"]
    assert src["robots_forbidden"] == 1 and src["offsite_filtered"] == 1 and src["depth_limited"] == 1
    assert src["failed"] == {"http_404": 1, "no_main_text": 1}  # /missing, /empty: fetched, counted, not lost
    assert stats["fetched"] == len(paths) - 1 == stats["kept"] + 2  # every page but robots.txt
    rows = {r["url"].removeprefix(site.url): r for r in map(json.loads, open(tmp_path / "records.jsonl", encoding="utf-8"))}
    assert set(rows) == {"/", "/a", "/b", "/deep/1", "/deep/2"}
    a = rows["/a"]
    assert a["title"] == "Page A" and a["date"] == "2024-05-01" and a["fetched_at"] and a["depth"] == 1
    assert "房间干净整洁" in a["text"] and "© example" not in a["text"]  # main text, not the footer


def test_the_page_limit_stops_a_crawl_and_a_rerun_resumes_it(tmp_path):
    with Site() as site:
        first = collect(_cfg(site, max_pages=3), tmp_path)
        # Scrapy closes after the 3rd page; a request the engine started before the close lands (at most one per
        # request allowed in flight), so the bound is max_pages + concurrent_requests_per_domain
        assert 3 <= first["fetched"] <= 4 and first["sources"]["web"]["finish_reason"] == "closespider_pagecount"
        fetched_first = [p for p in site.paths() if p != "/robots.txt"]
        site.log.clear()
        second = collect(_cfg(site, max_pages=50), tmp_path)  # only max_pages changed: the same crawl, resumed from JOBDIR
        fetched_second = [p for p in site.paths() if p != "/robots.txt"]
    assert second["sources"]["web"]["resumed"] is True and second["sources"]["web"]["finish_reason"] == "finished"
    assert not set(fetched_first) & set(fetched_second)  # nothing fetched again
    assert second["fetched"] == 7 and len(fetched_first) + len(fetched_second) == 7


def test_a_crawl_stopped_with_sigint_resumes_from_its_jobdir(tmp_path):
    import os
    import signal
    import threading
    import time

    work = tmp_path / "sources" / "web"
    with Site() as site:
        first: dict = {}
        slow = _cfg(site, download_delay=0.5, autothrottle=False)  # ~3.5 s of crawling: time to stop it part-way
        thread = threading.Thread(target=lambda: first.update(collect(slow, tmp_path)))
        thread.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (
                (work / "pages.jsonl").is_file() and len((work / "pages.jsonl").read_text().splitlines()) >= 2):
            time.sleep(0.05)
        os.kill(int((work / "child.pid").read_text()), signal.SIGINT)  # what Ctrl-C sends: Scrapy stops gracefully
        thread.join(timeout=120)
        before = [p for p in site.paths() if p != "/robots.txt"]
        site.log.clear()
        second = collect(slow, tmp_path)
        after = [p for p in site.paths() if p != "/robots.txt"]
    assert first["sources"]["web"]["finish_reason"] == "shutdown" and 2 <= len(before) < 7
    assert second["sources"]["web"]["resumed"] is True and second["sources"]["web"]["finish_reason"] == "finished"
    assert not set(before) & set(after) and len(before) + len(after) == 7 and second["fetched"] == 7
