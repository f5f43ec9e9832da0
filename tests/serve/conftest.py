"""Real servers for the serve tests: uvicorn on 127.0.0.1 (a pre-bound free port) in a thread, over
the real 300-item ml-100k store with the real LLM and text encoder, in a smaller configuration
(zero-shot ranker over 5 candidates, 5 history items in the prompt, 3 recommendations a reply)."""

import socket
import threading
import time
from contextlib import contextmanager

import httpx
import pytest
import uvicorn

from llmrec.recommender import Recommender
from llmrec.serve import create_app
from llmrec.serve.transport import uvicorn_options

SMALL = {"ranker": "zero-shot", "explain": "grounded", "candidates": 5, "history_max": 5, "k": 3}
"""The smaller real configuration the servers run (also written to YAML for the CLI test)."""


@contextmanager
def live(recommender, cfg):
    """A running server with ``cfg``'s uvicorn settings (``transport.uvicorn_options``, as ``llmrec serve``);
    yields an object with ``url`` (``http://127.0.0.1:PORT``) and ``app``."""
    app = create_app(recommender, cfg)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", **uvicorn_options(cfg)))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)

    class Live:
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"

    Live.app, Live.serving = app, app.state.serving
    try:
        yield Live
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def wait_idle(url: str, timeout: float = 120) -> None:
    """Until the server's worker pool has nothing running or queued (a timed-out job may still run)."""
    deadline = time.monotonic() + timeout
    while True:
        h = httpx.get(f"{url}/health").json()
        if h["running"] == 0 and h["queued"] == 0:
            return
        assert time.monotonic() < deadline, f"still busy: {h}"
        time.sleep(0.05)


@pytest.fixture(scope="session")
def serve_cfg(small_store):
    return small_store.replace(**SMALL)


@pytest.fixture(scope="session")
def serve_rec(serve_cfg):
    return Recommender.load(config=serve_cfg)


@pytest.fixture(scope="session")
def server(serve_rec, serve_cfg):
    """The default serving settings (no API key, one worker, a queue of 64, a 256-snapshot cache)."""
    with live(serve_rec, serve_cfg) as s:
        yield s
