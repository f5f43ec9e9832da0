"""Load test of ``llmrec serve``: N concurrent chat clients for a bounded time and request count.

Each client (an asyncio task, raw ``httpx`` so that every status is counted and nothing is retried)
holds conversations of four turns against one ml-100k user, the whole conversation sent each time
as the server is stateless: ``I'm user U`` (a ranking), ``why the second one?`` (no ranking: the
replay resumes from the cached snapshot), ``show more`` (a ranking), ``why the first one?``.
New requests start until ``--duration`` seconds have passed or ``--max-requests`` were sent; the
ones in flight then finish (at most ``--drain`` seconds more; any cut off counts as dropped).

Reported: throughput (answered requests per second of the whole run), client latency p50/p99 per
kind, errors by status, dropped requests, the server's peak RSS (its ``/health`` ``rss_peak_mb``,
``getrusage``; and ``psutil`` or ``/proc`` sampling when this script started the server), and the
serving overhead: client latency minus the server's own ``queue_s`` and ``work_s`` (in the
response's ``llmrec.timing``; ``work_s`` is the replay and ranking in the worker thread, ``queue_s``
the wait for it), i.e. HTTP, JSON, validation, the event loop, loopback and the client; and the
server's share of it (the ``Server-Timing`` header's ``total``: arrival to the rendered body, minus
the same two).

    .venv/bin/python eval/bench_serve.py --clients 32 --duration 60            # starts a server
    .venv/bin/python eval/bench_serve.py --url http://127.0.0.1:8000 --api-key K # a running one
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np

TURNS = ["I'm user {u}", "why the second one?", "show more", "why the first one?"]
KIND = ["ranking", "why", "ranking", "why"]


def pct(xs, q) -> float | None:
    return round(float(np.percentile(xs, q)), 4) if len(xs) else None


def rss_of(pid: int) -> int:
    """Resident bytes of a process: psutil when installed, else /proc/PID/status."""
    try:
        import psutil

        return psutil.Process(pid).memory_info().rss
    except ImportError:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class Bench:
    def __init__(self, url: str, args):
        self.url, self.args = url, args
        self.headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
        self.sent = 0
        self.records: list[dict] = []
        self.stop_at = 0.0

    async def client(self, http: httpx.AsyncClient, n: int) -> None:
        rng = random.Random(self.args.seed * 1000 + n)
        while True:
            user, msgs = rng.randint(1, 943), []
            for turn, kind in zip(TURNS, KIND, strict=True):
                if time.monotonic() >= self.stop_at or self.sent >= self.args.max_requests:
                    return
                self.sent += 1
                msgs = [*msgs, {"role": "user", "content": turn.format(u=user)}]
                rec = {"kind": kind, "turn": len(msgs) // 2 + 1}
                t0 = time.perf_counter()
                try:
                    r = await http.post(f"{self.url}/v1/chat/completions", headers=self.headers,
                                        json={"model": self.args.model, "messages": msgs})
                    rec["latency_s"] = time.perf_counter() - t0
                    rec["status"] = r.status_code
                except (httpx.TransportError, asyncio.CancelledError) as e:
                    rec.update(status="dropped", error=type(e).__name__, latency_s=time.perf_counter() - t0)
                    self.records.append(rec)
                    if isinstance(e, asyncio.CancelledError):
                        raise
                    break
                self.records.append(rec)
                if r.status_code != 200:
                    break  # a new conversation: this one's state on the client is no longer complete
                body = r.json()
                timing = body["llmrec"]["timing"]
                rec.update(queue_s=timing["queue_s"], work_s=timing["work_s"], replayed=timing["replayed_turns"])
                rec["overhead_s"] = rec["latency_s"] - timing["queue_s"] - timing["work_s"]
                total = [p for p in r.headers.get("server-timing", "").split(",") if p.strip().startswith("total;")]
                server_s = float(total[0].split("dur=")[1]) / 1000 if total else timing["server_s"]
                rec["server_overhead_s"] = server_s - timing["queue_s"] - timing["work_s"]
                msgs.append({"role": "assistant", "content": body["choices"][0]["message"]["content"]})

    async def run(self) -> float:
        limits = httpx.Limits(max_connections=self.args.clients, max_keepalive_connections=self.args.clients)
        async with httpx.AsyncClient(limits=limits, timeout=self.args.drain + self.args.duration + 60) as http:
            t0 = time.monotonic()
            self.stop_at = t0 + self.args.duration
            tasks = [asyncio.create_task(self.client(http, n)) for n in range(self.args.clients)]
            done, pending = await asyncio.wait(tasks, timeout=self.args.duration + self.args.drain)
            for t in pending:  # past the drain: what is still in flight is dropped
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            return time.monotonic() - t0


def summarize(records: list[dict], elapsed: float, args, rss: dict) -> dict:
    ok = [r for r in records if r["status"] == 200]
    statuses = Counter(str(r["status"]) for r in records)
    out = {"clients": args.clients, "duration_s": args.duration, "elapsed_s": round(elapsed, 1),
           "sent": len(records), "answered": len(ok), "by_status": dict(sorted(statuses.items())),
           "errors_5xx": sum(v for k, v in statuses.items() if k.isdigit() and k.startswith("5")),
           "rejected_429": statuses.get("429", 0), "dropped": statuses.get("dropped", 0),
           "throughput_rps": round(len(ok) / elapsed, 3) if elapsed else None, **rss,
           "loadavg_end": [round(x, 2) for x in os.getloadavg()]}
    for kind in ("all", "ranking", "why"):
        rs = [r for r in ok if kind == "all" or r["kind"] == kind]
        out[f"latency_{kind}"] = {"n": len(rs), "p50_s": pct([r["latency_s"] for r in rs], 50),
                                  "p99_s": pct([r["latency_s"] for r in rs], 99),
                                  "work_p50_s": pct([r["work_s"] for r in rs], 50),
                                  "queue_p50_s": pct([r["queue_s"] for r in rs], 50)}
    for key, name in (("overhead_s", "overhead_ms"), ("server_overhead_s", "server_overhead_ms")):
        over = [r[key] * 1000 for r in ok]
        out[name] = {"p50": pct(over, 50), "p99": pct(over, 99), "max": round(max(over), 3) if over else None}
    out["replayed_turns"] = dict(Counter(str(r["replayed"]) for r in ok))
    return out


def start_server(args) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "llmrec.cli", "serve", "--port", str(port), "--log-level", "warning"]
    cmd += ["--config", args.config] if args.config else []
    cmd += ["--data-dir", args.data_dir] if args.data_dir else []
    proc = subprocess.Popen(cmd, stdout=sys.stderr, stderr=sys.stderr)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + args.start_timeout
    while True:
        if proc.poll() is not None:
            sys.exit(f"bench_serve: the server exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/health").status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            sys.exit("bench_serve: the server did not come up")
        time.sleep(0.5)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", help="a running server (default: start `llmrec serve` on a free loopback port)")
    p.add_argument("--config", help="config file for the server this script starts")
    p.add_argument("--data-dir", help="store for the server this script starts (default: the config's)")
    p.add_argument("--api-key", default=os.environ.get("LLMREC_SERVE__API_KEY") or os.environ.get("LLMREC_SERVE_API_KEY"))
    p.add_argument("--model", default="llmrec")
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--duration", type=float, default=60.0, help="seconds during which new requests start")
    p.add_argument("--max-requests", type=int, default=10_000)
    p.add_argument("--drain", type=float, default=600.0, help="seconds the in-flight requests may take after")
    p.add_argument("--start-timeout", type=float, default=300.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="also write the summary as JSON here")
    args = p.parse_args(argv)

    proc, peak, stop = None, [0], threading.Event()
    url = args.url
    if url is None:
        proc, url = start_server(args)

        def sample():
            while not stop.is_set():
                try:
                    peak[0] = max(peak[0], rss_of(proc.pid))
                except (OSError, ProcessLookupError):
                    return
                stop.wait(0.5)
        threading.Thread(target=sample, daemon=True).start()
    try:
        bench = Bench(url.rstrip("/"), args)
        elapsed = asyncio.run(bench.run())
        health = httpx.get(f"{url}/health", headers=bench.headers).json()
        rss = {"server_rss_peak_mb": health.get("rss_peak_mb")}
        if proc is not None:
            rss["server_rss_peak_sampled_mb"] = round(peak[0] / 2**20, 1)
        summary = summarize(bench.records, elapsed, args, rss)
        summary["server_health"] = health
    finally:
        stop.set()
        if proc is not None:
            proc.terminate()
            proc.wait(120)
    text = json.dumps(summary, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
