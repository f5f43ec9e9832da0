"""A real `chroma run` server for tests (127.0.0.1, a free port, telemetry off), shared by
tests/store/test_shared_state.py, tests/store/test_store_faults.py and tests/serve/test_serve_replicas.py."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

QUIET = {"ANONYMIZED_TELEMETRY": "False", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
         "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def chroma_cli() -> str:
    exe = Path(sys.executable).with_name("chroma")
    found = str(exe) if exe.exists() else shutil.which("chroma")
    assert found, "the `chroma` command (chromadb's CLI) is not installed beside this Python"
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ChromaServer:
    """A `chroma run` subprocess on ``127.0.0.1:port`` over ``folder`` (telemetry off)."""

    def __init__(self, folder: Path):
        self.folder, self.host, self.port, self.proc = folder, "127.0.0.1", free_port(), None

    def start(self) -> None:
        log = open(self.folder / "chroma.log", "ab")  # noqa: SIM115 (the child keeps it)
        self.proc = subprocess.Popen([chroma_cli(), "run", "--path", str(self.folder / "db"), "--host", self.host,
                                      "--port", str(self.port)], stdout=log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **QUIET}, cwd=self.folder)
        log.close()
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://{self.host}:{self.port}/api/v2/heartbeat", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"chroma run did not start: {(self.folder / 'chroma.log').read_text(errors='replace')[-2000:]}")
            time.sleep(0.1)

    def stop(self, kill: bool = False) -> None:
        if self.proc is None:
            return
        self.proc.kill() if kill else self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    @contextmanager
    def paused(self, at_most_s: float):
        """The server stopped (SIGSTOP: its socket still accepts connections, nothing answers) inside
        the block, resumed (SIGCONT) on leaving it, and after ``at_most_s`` seconds at the latest,
        so that a client without a timeout blocks only that long (the test then fails on time)."""
        os.kill(self.proc.pid, signal.SIGSTOP)
        guard = threading.Timer(at_most_s, self.resume)
        guard.start()
        try:
            yield
        finally:
            guard.cancel()
            self.resume()

    def resume(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)


@contextmanager
def running(folder: Path):
    """A fresh :class:`ChromaServer` on ``folder`` (created), started inside the block; on leaving it,
    resumed if a test paused it, then stopped."""
    folder.mkdir(parents=True, exist_ok=True)
    srv = ChromaServer(folder)
    srv.start()
    try:
        yield srv
    finally:
        srv.resume()
        srv.stop()
