"""Issue 26, finding 1: a set API key is never printed by a command nor written to a file it writes."""

import json
import os
import secrets
import stat

import pytest

from llmrec.cli import main
from llmrec.config import SECRET_MASK, Config, secret_keys


@pytest.fixture()
def key(monkeypatch):
    value = "sk-test-" + secrets.token_hex(12)
    monkeypatch.setenv("LLMREC_SERVE_API_KEY", value)
    return value


def _files_holding(root, needle: str) -> list[str]:
    hits = []
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                if needle.encode() in f.read():
                    hits.append(path)
    return hits


def test_secret_keys_are_marked_on_their_field():
    assert "serve_api_key" in secret_keys()


def test_summary_and_written_config_mask_the_key(tmp_path, key):
    cfg = Config.load()
    assert key not in cfg.summary() and f"serve_api_key={SECRET_MASK}" in cfg.summary()
    path = cfg.write(tmp_path / "config.json")
    assert key not in path.read_text()
    assert json.loads(path.read_text())["serve_api_key"] == SECRET_MASK
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_no_command_prints_or_writes_the_key(base_cfg, tmp_path, key, capsys):
    items = tmp_path / "items.jsonl"
    items.write_text('{"id": "a", "title": "Alpha", "text": "a quiet film about the sea"}\n'
                     '{"id": "b", "title": "Beta", "text": "a loud film about cars"}\n'
                     '{"id": "c", "title": "Gamma", "text": "a quiet film about boats"}\n')
    store = tmp_path / "store"
    common = ["--home", str(base_cfg.home), "--data-dir", str(store)]
    assert main(["ingest", *common, "--catalog", str(items)]) == 0
    assert main(["recommend", *common, "--history", "a", "-k", "2"]) == 0
    out_dir = tmp_path / "eval-out"
    spec = tmp_path / "eval.yaml"
    spec.write_text(f"dataset: ml-latest-small\neval_max_users: 20\neval_systems: [most-popular]\n"
                    f"eval_protocols: [full]\neval_bootstrap: 10\neval_out: {out_dir}\n")
    assert main(["eval", str(spec), "--home", str(base_cfg.home)]) == 0
    printed = capsys.readouterr()
    assert "serve_api_key=" + SECRET_MASK in printed.err  # the key is set, and the line says so
    assert key not in printed.out and key not in printed.err
    assert _files_holding(store, key) == [] and _files_holding(out_dir, key) == []
    for written in (store / "config.json", out_dir / "config.json"):
        assert stat.S_IMODE(written.stat().st_mode) == 0o600, written


def test_serve_startup_log_hides_the_key(tmp_path, key):
    """``llmrec serve`` as a real process: its config line says a key is set but not which; the error it
    stops with (no store in the empty ``--data-dir``) names neither, and nothing it writes holds the key."""
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    home, store = tmp_path / "home", tmp_path / "empty-store"
    store.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMREC_")}
    env.update(LLMREC_SERVE_API_KEY=key, LLMREC_HOME=str(home), OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-m", "llmrec.cli", "serve", "--data-dir", str(store), "--port", str(port)],
                          env=env, capture_output=True, text=True, timeout=120)
    log = done.stdout + done.stderr
    assert done.returncode == 2 and f"no store at {store}" in log, log
    assert f"serve_api_key={SECRET_MASK} (env LLMREC_SERVE_API_KEY)" in log
    assert key not in log
    assert _files_holding(tmp_path, key) == []
