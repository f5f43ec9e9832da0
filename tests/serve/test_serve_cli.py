"""`llmrec serve` as a real process: it starts from the CLI, hides its API key in the printed config,
and on SIGTERM finishes the request in flight before it exits."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import yaml
from conftest import SMALL


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_serves_and_shuts_down_gracefully(small_store, tmp_path):
    key, port = "sk-cli-secret-42", free_port()
    conf = tmp_path / "serve.yaml"
    conf.write_text(yaml.safe_dump({**SMALL, "serve_api_key": key, "threads": 1}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMREC_") or k == "LLMREC_HOME"}
    err = open(tmp_path / "stderr.txt", "w+")
    proc = subprocess.Popen([sys.executable, "-m", "llmrec.cli", "serve", "--config", str(conf), "--data-dir",
                             str(small_store.store_dir()), "--port", str(port), "--log-level", "info"],
                            env={**env, "OMP_NUM_THREADS": "1"}, stdout=err, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, (tmp_path / "stderr.txt").read_text()
            try:
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.25)
        log = (tmp_path / "stderr.txt").read_text()
        assert "serve_api_key=<hidden>" in log and key not in log

        result: dict = {}

        def ask():
            result["r"] = httpx.post(f"{url}/v1/chat/completions", timeout=120, headers={"Authorization": f"Bearer {key}"},
                                     json={"model": "llmrec", "messages": [{"role": "user", "content": "I'm user 3"}]})

        t = threading.Thread(target=ask)
        t.start()
        deadline = time.monotonic() + 60
        while httpx.get(f"{url}/health").json()["running"] < 1:  # the ranking has started
            assert time.monotonic() < deadline and "r" not in result
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        t.join(120)
        r = result["r"]
        assert r.status_code == 200 and len(r.json()["llmrec"]["items"]) == SMALL["k"]
        # uvicorn re-raises the signal once shut down, so the exit status says SIGTERM ended it
        assert proc.wait(60) in (0, -signal.SIGTERM)
        log = (tmp_path / "stderr.txt").read_text()
        assert "Shutting down" in log and "Finished server process" in log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        err.close()
