"""Running the app under uvicorn: in the foreground (the CLI) or on a background thread (tests,
benchmarks). Shutdown is graceful: uvicorn stops accepting, lets in-flight requests finish for up
to `drain_seconds`, then the app's lifespan drains the batchers.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time

from trainforge.errors import UserError


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def require_key_off_loopback(host: str, api_key: str | None, env_name: str) -> None:
    if not is_loopback(host) and not api_key:
        raise UserError(f"--host {host} is reachable from other machines: set ${env_name} (or --api-key-env) to the "
                        f"bearer token clients must send, or bind 127.0.0.1")


def uvicorn_config(app, host: str, port: int, drain_seconds: float):
    import uvicorn

    return uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="on",
                          timeout_graceful_shutdown=drain_seconds, limit_concurrency=None)


def serve_foreground(app, host: str, port: int, drain_seconds: float) -> None:
    import uvicorn

    from trainforge.allocator import keep_freed_memory

    keep_freed_memory()  # steadier, faster forwards: no page faults on every batch's activations (see there)
    uvicorn.Server(uvicorn_config(app, host, port, drain_seconds)).run()


class ServerThread:
    """`with ServerThread(app) as base_url:` — the app on 127.0.0.1 at a free port, on a thread."""

    def __init__(self, app, drain_seconds: float = 10.0):
        import uvicorn

        # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on sockets that say they are TCP, and
        # without it every small response waits ~40 ms for a delayed ACK
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn_config(app, "127.0.0.1", self.port, drain_seconds))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120) -> str:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start (see the log above)")
            time.sleep(0.02)
        return self.url

    def stop(self, timeout: float = 30) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        self.sock.close()

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
