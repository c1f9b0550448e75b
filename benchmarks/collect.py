"""The crawler's politeness, measured: Scrapy's library defaults against trainforge's settings on the same
local site (127.0.0.1), side by side in one process. The site's robots.txt forbids some paths; the server
logs every request, so the forbidden URLs each crawler fetched are listed, not inferred.

    .venv/bin/python benchmarks/collect.py [--pages 40] [--forbidden 10] [--latency-ms 20]

Each crawl runs in its own child process (Twisted's reactor cannot restart), exactly as the collect stage
runs it; pages/s is Scrapy's own elapsed time (interpreter start-up excluded), wall is the whole child.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.robotparser import RobotFileParser

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from trainforge.collect.config import CrawlSource  # noqa: E402
from trainforge.collect.crawl import _common_settings, allowed_domains, polite_settings, run_child  # noqa: E402

ROBOTS = "User-agent: *\nDisallow: /private/\nDisallow: /cart\n"


class LocalSite:
    """`pages` article pages in a chain with cross links, every fifth linking into /private/ and /cart (forbidden)."""

    def __init__(self, pages: int, forbidden: int, latency_s: float):
        self.pages, self.forbidden, self.latency = pages, forbidden, latency_s
        self.log: list[str] = []
        self.in_flight = self.peak = 0
        self.lock = threading.Lock()

    def page(self, path: str) -> str | None:
        if path.startswith("/p/") or path == "/":
            k = 0 if path == "/" else int(path[3:])
            if k >= self.pages:
                return None
            links = [f"/p/{j}" for j in (k + 1, k + 2, (k * 7) % self.pages) if j < self.pages]
            if k % 5 == 0:
                links += [f"/private/{(k // 5) % self.forbidden}", f"/cart?item={(k // 5) % self.forbidden}"]
            body = f"第{k}页。这家店的东西质量很好，物流很快，包装也很仔细，下次还会再来买。 " * 8
            nav = "".join(f'<a href="{h}">{h}</a> ' for h in links)
            return f"<html><head><title>Page {k}</title></head><body><nav>{nav}</nav><article><p>{body}</p></article></body></html>"
        if path.startswith("/private/") or path.startswith("/cart"):
            return "<html><body><article><p>" + "私人页面，不应被抓取。" * 20 + "</p></article></body></html>"
        return None

    def __enter__(self):
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                with site.lock:
                    site.log.append(self.path)
                    site.in_flight += 1
                    site.peak = max(site.peak, site.in_flight)
                try:
                    time.sleep(site.latency)  # a real server takes time: concurrency shows
                    body = ROBOTS if self.path == "/robots.txt" else site.page(self.path)
                    data = (body or "not found").encode()
                    self.send_response(200 if body is not None else 404)
                    self.send_header("Content-Type", "text/plain" if self.path == "/robots.txt" else "text/html; charset=utf-8")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                finally:
                    with site.lock:
                        site.in_flight -= 1

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def reset(self):
        self.log.clear()
        self.peak = 0


def forbidden_fetched(log: list[str], user_agent: str, base: str) -> list[str]:
    rp = RobotFileParser()
    rp.parse(ROBOTS.splitlines())
    return [p for p in log if p != "/robots.txt" and not rp.can_fetch(user_agent, base.rstrip("/") + p)]


def crawl_once(label: str, site: LocalSite, make_settings, cfg: CrawlSource, work: Path) -> dict:
    site.reset()
    workdir = work / "".join(c if c.isalnum() else "_" for c in label)
    shutil.rmtree(workdir, ignore_errors=True)
    settings = make_settings(workdir)
    t0 = time.perf_counter()
    stats = run_child({"settings": settings, "start_urls": [site.url], "allowed_domains": allowed_domains(cfg)}, workdir)
    wall = time.perf_counter() - t0
    pages = [p for p in site.log if p != "/robots.txt"]
    ua = settings.get("USER_AGENT") or "Scrapy"
    return {"label": label, "pages": len(pages), "seconds": stats.get("elapsed_time_seconds", wall), "wall": wall,
            "peak_concurrency": site.peak, "robots_txt_read": "/robots.txt" in site.log,
            "forbidden": forbidden_fetched(site.log, ua, site.url)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pages", type=int, default=40, help="allowed article pages on the site")
    ap.add_argument("--forbidden", type=int, default=10, help="distinct /private/ and /cart URLs linked (robots.txt forbids them)")
    ap.add_argument("--latency-ms", type=float, default=20.0, help="server time per request")
    ap.add_argument("--delay", type=float, default=1.0, help="our download_delay (the default of crawl.download_delay)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-collect-"))
    runs = []
    with LocalSite(args.pages, args.forbidden, args.latency_ms / 1000) as site:
        ours = CrawlSource(start_urls=[site.url], max_depth=0, max_pages=10_000, download_delay=args.delay)
        # Scrapy from a library: nothing set but what makes the run observable (error pages to the spider, a log file)
        runs.append(crawl_once("scrapy defaults", site, lambda w: _common_settings(ours, w), ours, work))
        runs.append(crawl_once(f"trainforge (delay {args.delay:g} s)", site, lambda w: polite_settings(ours, w, 10_000), ours, work))
        fast = ours.model_copy(update={"download_delay": 0.0})
        runs.append(crawl_once("trainforge (delay 0)", site, lambda w: polite_settings(fast, w, 10_000), fast, work))
    shutil.rmtree(work, ignore_errors=True)
    linked = {u for k in range(0, args.pages, 5) for u in (f"/private/{(k // 5) % args.forbidden}", f"/cart?item={(k // 5) % args.forbidden}")}
    print(f"local site: {args.pages} allowed pages + {len(linked)} forbidden URLs linked, {args.latency_ms:g} ms per request; "
          "peak conc. = most requests the server was handling at once\n")
    print(f"{'crawler':<26}{'pages':>6}{'seconds':>9}{'pages/s':>9}{'wall s':>8}{'peak conc.':>11}  forbidden URLs fetched")
    for r in runs:
        shown = f"{len(r['forbidden'])}: " + ", ".join(sorted(r["forbidden"])[:4]) + (" …" if len(r["forbidden"]) > 4 else "") if r["forbidden"] else "none"
        print(f"{r['label']:<26}{r['pages']:>6}{r['seconds']:>9.2f}{r['pages'] / r['seconds']:>9.1f}{r['wall']:>8.1f}"
              f"{r['peak_concurrency']:>11}  {shown}")
    base = runs[0]["pages"] / runs[0]["seconds"]
    for r in runs[1:]:
        print(f"{r['label']}: {r['pages'] / r['seconds'] / base:.3f}× the pages/s of Scrapy's defaults; "
              f"forbidden fetched: {len(r['forbidden'])}")
    assert all(not r["forbidden"] for r in runs[1:]), "our crawler fetched a URL robots.txt forbids"
    print(json.dumps([{k: v for k, v in r.items() if k != "forbidden"} | {"forbidden_fetched": len(r["forbidden"])} for r in runs]))


if __name__ == "__main__":
    main()
