"""The crawl itself, in a process of its own: `python -m trainforge.collect.crawl_child SPEC.json`.

Twisted's reactor starts once per process and cannot be restarted, so a second crawl (the next
source, the next stage run, a test) in the parent would fail; each crawl gets a fresh interpreter.
SPEC.json names the Scrapy settings (built by trainforge.collect.crawl), the start URLs and where
pages and the crawl's stats go. A page is written (and flushed) as soon as it is parsed, so pages
fetched before a stop are kept; with JOBDIR the pending requests and the seen-set are kept too.
"""

from __future__ import annotations

import json
import sys
import time


def _spider_class():
    import scrapy
    from scrapy.http import TextResponse
    from scrapy.linkextractors import LinkExtractor

    class SiteSpider(scrapy.Spider):
        name = "trainforge"

        def __init__(self, start_urls, allowed_domains, allow=(), deny=(), **kw):
            super().__init__(**kw)
            self.start_urls = list(start_urls)
            self.allowed_domains = list(allowed_domains)  # OffsiteMiddleware drops links elsewhere
            self.links = LinkExtractor(allow=allow, deny=deny)

        def _first(self):
            # dont_filter=False: on a resume (JOBDIR) the seen-set already has the start pages
            for url in self.start_urls:
                yield scrapy.Request(url, callback=self.parse, dont_filter=False)

        async def start(self):  # Scrapy ≥ 2.13
            for request in self._first():
                yield request

        def start_requests(self):  # older Scrapy
            return self._first()

        def parse(self, response):
            text = isinstance(response, TextResponse)
            yield {"url": response.url, "status": response.status, "depth": response.meta.get("depth", 0),
                   "content_type": response.headers.get("Content-Type", b"").decode("latin-1"),
                   "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                   "body": response.text if text else None}
            if text and 200 <= response.status < 300 and hasattr(response, "xpath"):
                for link in self.links.extract_links(response):
                    yield response.follow(link.url, callback=self.parse)

    return SiteSpider


class PageWriter:
    """Item pipeline: one JSON line per page, appended (a resumed crawl adds to what the last one wrote)."""

    def __init__(self, path: str):
        self.path = path
        self.file = None

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler.settings.get("TRAINFORGE_PAGES"))

    def open_spider(self, spider=None):
        self.file = open(self.path, "a", encoding="utf-8", errors="replace")

    def close_spider(self, spider=None):
        self.file.close()

    def process_item(self, item, spider=None):
        self.file.write(json.dumps(dict(item), ensure_ascii=False) + "\n")
        self.file.flush()
        return item


def main(spec_path: str) -> int:
    from scrapy.crawler import CrawlerProcess

    with open(spec_path, encoding="utf-8") as f:
        spec = json.load(f)
    settings = {**spec["settings"], "TRAINFORGE_PAGES": spec["pages"],
                "ITEM_PIPELINES": {"trainforge.collect.crawl_child.PageWriter": 100}}
    process = CrawlerProcess(settings, install_root_handler=True)
    crawler = process.create_crawler(_spider_class())
    process.crawl(crawler, start_urls=spec["start_urls"], allowed_domains=spec["allowed_domains"],
                  allow=spec.get("allow", []), deny=spec.get("deny", []))
    process.start()
    with open(spec["stats"], "w", encoding="utf-8") as f:
        json.dump(crawler.stats.get_stats(), f, default=str, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
