"""Starting a real server for a test: the app under uvicorn on 127.0.0.1 at a free port, on a thread."""

from __future__ import annotations


def start_server(source: str, cfg=None, api_key: str | None = None, **source_kw):
    from trainforge.serve.app import create_app
    from trainforge.serve.config import DriftConfig, ServeConfig
    from trainforge.serve.runner import ServerThread
    from trainforge.serve.server import ModelSource, ServerState

    cfg = cfg or ServeConfig(drift=DriftConfig(enabled=False))
    state = ServerState(cfg, ModelSource.parse(source, **source_kw), api_key)
    server = ServerThread(create_app(state))
    server.start()
    return server, state
