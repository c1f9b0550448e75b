"""The ASGI layer in front of the API: bearer-token auth, the body-size limit, and the
requests-by-status counter. Written as plain ASGI (not a Starlette middleware) so an oversized
body is refused before any handler reads it, and streamed responses pass through untouched.
"""

from __future__ import annotations

import hmac
import json

from trainforge.serve.protocol import error_body

OPEN_PATHS = {"/healthz", "/readyz", "/metrics"}
"""Probes and the Prometheus scrape work without a token (they reveal no model output)."""
KNOWN_PATHS = {"/v1/models", "/v1/completions", "/v1/chat/completions", "/v1/classify", "/v1/feedback", *OPEN_PATHS}


class Guard:
    def __init__(self, app, state):
        self.app, self.state = app, state

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        endpoint = path if path in KNOWN_PATHS else "other"
        status_seen = {}

        async def counting_send(message):
            if message["type"] == "http.response.start":
                status_seen["status"] = message["status"]
            await send(message)

        try:
            refusal = self._refusal(scope, path)
            if refusal:
                return await _reply(counting_send, *refusal)
            limit = self.state.cfg.limits.max_body_bytes
            headers = dict(scope.get("headers") or [])
            declared = headers.get(b"content-length")
            if declared is not None:
                if not declared.isdigit() or int(declared) > limit:
                    return await _reply(counting_send, 413, _too_large(limit))
                return await self.app(scope, receive, counting_send)
            body, more = b"", True  # chunked upload: read it here, within the limit, then replay it
            while more:
                message = await receive()
                if message["type"] != "http.request":
                    return
                body += message.get("body", b"")
                more = message.get("more_body", False)
                if len(body) > limit:
                    return await _reply(counting_send, 413, _too_large(limit))
            return await self.app(scope, _replay(body, receive), counting_send)
        finally:
            self.state.metrics.requests.labels(endpoint, str(status_seen.get("status", 499))).inc()

    def _refusal(self, scope, path: str) -> tuple[int, dict] | None:
        key = self.state.api_key
        if not key or path in OPEN_PATHS:
            return None
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"authorization", b"").decode("latin-1")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), key.encode()):
            return 401, error_body("Incorrect or missing API key: send `Authorization: Bearer <key>`",
                                   "invalid_request_error", None, "invalid_api_key")
        return None


def _too_large(limit: int) -> dict:
    return error_body(f"request body over this server's limit of {limit:,} bytes", "invalid_request_error", None,
                      "request_too_large")


def _replay(body: bytes, receive):
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _reply(send, status: int, body: dict) -> None:
    payload = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})
