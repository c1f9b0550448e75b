"""A tiny website on 127.0.0.1 for the crawler tests: robots.txt, an off-site link, a depth chain, an
error page and a page without main text. Every request's path is logged, so a test can prove what
was never fetched."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROBOTS = "User-agent: *\nDisallow: /private/\n"

BODY = ("这家酒店的位置很好，离地铁站只有五分钟，房间干净整洁，服务员态度热情。早餐种类丰富，价格也合理。"
        "The hotel is close to the station, the room was clean and the staff were friendly. ")


def article(title: str, links: list[str], words: str = BODY) -> str:
    nav = "".join(f'<li><a href="{h}">{h}</a></li>' for h in links)
    return (f"<html><head><title>{title}</title><meta name='date' content='2024-05-01'></head><body>"
            f"<nav><ul>{nav}</ul></nav><article><h1>{title}</h1><p>{words * 3}</p><p>{title} — {words}</p></article>"
            f"<footer>© example</footer></body></html>")


def pages(port: int) -> dict[str, str]:
    return {
        "/": article("Home", ["/a", "/b", "/private/secret", f"http://localhost:{port}/offsite", "/deep/1", "/missing", "/empty"]),
        "/a": article("Page A", ["/", "/b"]),
        "/b": article("Page B", ["/a"]),
        "/private/secret": article("Secret", []),
        "/offsite": article("Offsite", []),
        "/deep/1": article("Deep 1", ["/deep/2"]),
        "/deep/2": article("Deep 2", ["/deep/3"]),
        "/deep/3": article("Deep 3", ["/deep/4"]),
        "/deep/4": article("Deep 4", []),
        "/empty": "<html><head><title>nothing</title></head><body></body></html>",
    }


class Site:
    """`with Site() as site:` serves pages(port) on 127.0.0.1; site.log lists (host, path) of every request."""

    def __init__(self, extra: dict[str, str] | None = None, robots: str = ROBOTS):
        self.log: list[tuple[str, str]] = []
        self.extra = extra or {}
        self.robots = robots

    def __enter__(self) -> "Site":
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                host = (self.headers.get("Host") or "").split(":")[0]
                site.log.append((host, self.path, self.headers.get("User-Agent", "")))
                if self.path == "/robots.txt":
                    body, ctype, status = site.robots, "text/plain", 200
                else:
                    body = {**pages(site.port), **site.extra}.get(self.path)
                    ctype, status = "text/html; charset=utf-8", 200 if body is not None else 404
                    body = body if body is not None else "<html><body>not found</body></html>"
                data = body.encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def paths(self) -> list[str]:
        return [p for _, p, _ in self.log]

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
