"""Serving the page with safe defaults: loopback, a bounded queue, queue-skipping REST closed, private paths blocked."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

import rag
from ui.app import build_app
from ui.login import ThrottledLogin
from ui.render import CSS

_SERVED: list[rag.Engine] = []


def launch(engine: rag.Engine, host: str = "127.0.0.1", port: int = 7860, block: bool = True):
    """Serve the app for `engine` (holding its embedded index against other writers while it runs)."""
    s = engine.settings
    engine.hold_for_serving()
    _SERVED.append(engine)
    demo = build_app(engine)
    demo.queue(max_size=s.ui_queue_size, default_concurrency_limit=s.ui_concurrency, api_open=False)
    login = s.login
    blocked = [str(s.index_dir.resolve()), str(Path(".env").resolve()), str(s.feedback_file.resolve())]
    if s.record_url.startswith("sqlite:///"):
        blocked.append(s.record_url.removeprefix("sqlite:///"))
    return demo.launch(
        server_name=host,
        server_port=port,
        auth=ThrottledLogin(*login) if login else None,
        max_file_size=f"{int(s.max_file_mb)}mb",
        blocked_paths=blocked,
        show_error=False,
        prevent_thread_lock=not block,
        quiet=True,
        footer_links=[],
        css=CSS,
        ssr_mode=False,
        mcp_server=False,
    )


def close_all() -> None:
    """Stop every app this process serves and release their indexes (tests, and a clean shutdown)."""
    gr.close_all()
    while _SERVED:
        _SERVED.pop().release_serving()
