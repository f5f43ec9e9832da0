"""Raw HTTP (httpx) against the real server: every bad request a 4xx in OpenAI's error shape, the API
key, the size and count limits, 429 when the worker and its queue are full, the per-request timeout."""

import threading

import httpx
import pytest
from conftest import live, wait_idle

from llmrec.errors import ConfigError
from llmrec.serve.serving import ServingChat, check_config

OK_MSG = [{"role": "user", "content": "I loved Alien"}]


def post(url, body=None, **kw):
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=120, **kw)


def assert_error(r, status, param=None, code=None, type_="invalid_request_error"):
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    assert err["type"] == type_ and err["param"] == param
    if code is not None:
        assert err["code"] == code
    return err


BAD = [  # (body, status, param) -- none reaches the model
    ({"messages": OK_MSG}, 400, "model"),
    ({"model": "llmrec"}, 400, "messages"),
    ({"model": 5, "messages": OK_MSG}, 400, "model"),
    ({"model": "llmrec", "messages": "hi"}, 400, "messages"),
    ({"model": "llmrec", "messages": [{"content": "hi"}]}, 400, "messages[0].role"),
    ({"model": "llmrec", "messages": [{"role": "bot", "content": "hi"}]}, 400, "messages[0].role"),
    ({"model": "llmrec", "messages": [{"role": "user", "content": 5}]}, 400, "messages[0].content"),
    ({"model": "llmrec", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, 400,
     "messages[0].content[0].type"),
    ({"model": "llmrec", "messages": OK_MSG, "stream": "yes"}, 400, "stream"),
    ({"model": "llmrec", "messages": OK_MSG, "temperature": 7}, 400, "temperature"),
    ({"model": "llmrec", "messages": OK_MSG, "response_format": {"type": "xml"}}, 400, "response_format.type"),
    ({"model": "llmrec", "messages": OK_MSG, "response_format": {"type": "json_schema"}}, 400,
     "response_format.json_schema"),
    ({"model": "llmrec", "messages": []}, 400, "messages"),
    ({"model": "llmrec", "messages": [*OK_MSG, {"role": "assistant", "content": "x"}]}, 400, "messages[1].role"),
    ({"model": "llmrec", "messages": [{"role": "system", "content": "hi"}]}, 400, "messages[0].role"),
    ({"model": "llmrec", "messages": [{"role": "user", "content": "   "}]}, 400, "messages[0].content"),
    ({"model": "llmrec", "messages": [{"role": "tool", "content": "x", "tool_call_id": "1"}, *OK_MSG]}, 400,
     "messages[0].role"),
    ({"model": "llmrec", "messages": OK_MSG, "n": 2}, 400, "n"),
    ({"model": "llmrec", "messages": OK_MSG, "stream_options": {"include_usage": True}}, 400, "stream_options"),
    ({"model": "llmrec", "messages": OK_MSG, "tools": [{"type": "function", "function": {"name": "f"}}]}, 400,
     "tools"),
    ({"model": "gpt-4o", "messages": OK_MSG}, 404, "model"),
    ([], 400, None),
]


@pytest.mark.parametrize(("body", "status", "param"), BAD, ids=[f"{b[2]}-{i}" for i, b in enumerate(BAD)])
def test_bad_requests_are_4xx_in_openais_shape(server, body, status, param):
    assert_error(post(server.url, body), status, param)


def test_malformed_json_missing_body_and_wrong_content_type(server):
    url = f"{server.url}/v1/chat/completions"
    h = {"content-type": "application/json"}
    err = assert_error(httpx.post(url, content=b'{"model": "llmrec", "messages": [', headers=h), 400, None,
                       "invalid_json")
    assert "malformed JSON" in err["message"]
    assert_error(httpx.post(url, content=b"", headers=h), 400, None)
    assert_error(httpx.post(url, content=b"\xff\xfe\x00", headers=h), 400, None)
    err = assert_error(httpx.post(url, content=b'{"model": "llmrec", "messages": []}',
                                  headers={"content-type": "text/plain"}), 400, None)
    assert "application/json" in err["message"]
    assert_error(httpx.post(url, content=b"[" * 100_000 + b"]" * 100_000, headers=h), 400, None)  # too deep
    lone = b'{"model": "llmrec", "messages": [{"role": "user", "content": "I loved \\ud800 Alien"}]}'
    assert_error(httpx.post(url, content=lone, headers=h), 400, "messages[0].content")


def test_unknown_route_and_method(server):
    assert_error(httpx.get(f"{server.url}/v1/nothing"), 404, None, "not_found")
    assert_error(httpx.get(f"{server.url}/v1/chat/completions"), 405, None, "method_not_allowed")


@pytest.fixture(scope="module")
def strict(serve_rec, serve_cfg):
    cfg = serve_cfg.replace(serve_api_key="sk-test-123", serve_max_body_bytes=4096, serve_max_messages=4,
                            serve_max_message_chars=200, serve_concurrency=1, serve_queue=1)
    with live(serve_rec, cfg) as s:
        yield s


KEY = {"Authorization": "Bearer sk-test-123"}


def test_api_key(strict):
    assert httpx.get(f"{strict.url}/health").status_code == 200  # open for probes
    assert_error(httpx.get(f"{strict.url}/v1/models"), 401, None, "invalid_api_key")
    assert_error(httpx.get(f"{strict.url}/v1/models", headers={"Authorization": "Bearer wrong"}), 401, None,
                 "invalid_api_key")
    assert_error(httpx.get(f"{strict.url}/v1/models", headers={"Authorization": "Basic sk-test-123"}), 401, None)
    assert_error(post(strict.url, {"model": "llmrec", "messages": OK_MSG}), 401, None)
    assert_error(post(strict.url, {"bad": 1}), 401, None)  # authentication comes before the body
    assert httpx.get(f"{strict.url}/v1/models", headers=KEY).json()["data"][0]["id"] == "llmrec"


def test_body_size_message_count_and_length_limits(strict):
    big = {"model": "llmrec", "messages": [{"role": "user", "content": "x" * 5000}]}
    assert_error(post(strict.url, big, headers=KEY), 413, None, "request_too_large")

    def chunked():  # no Content-Length: the limit is counted as the body arrives
        for _ in range(10):
            yield b" " * 1000
    r = httpx.post(f"{strict.url}/v1/chat/completions", content=chunked(),
                   headers={**KEY, "content-type": "application/json"})
    assert_error(r, 413, None, "request_too_large")
    five = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x"}] * 2 + OK_MSG
    err = assert_error(post(strict.url, {"model": "llmrec", "messages": five}, headers=KEY), 400, "messages",
                       "too_many_messages")
    assert "serve_max_messages" in err["message"]
    long = [{"role": "user", "content": "I loved " + "a" * 300}]
    assert_error(post(strict.url, {"model": "llmrec", "messages": long}, headers=KEY), 400, "messages[0].content",
                 "message_too_long")
    # ignored messages (system) are bounded only by the body size
    system = [{"role": "system", "content": "s" * 1000}, *OK_MSG]
    r = post(strict.url, {"model": "llmrec", "messages": system}, headers=KEY)
    assert r.status_code == 200
    dur = {p.split(";")[0].strip(): float(p.split("dur=")[1]) for p in r.headers["server-timing"].split(",")}
    t = r.json()["llmrec"]["timing"]
    assert dur["work"] == pytest.approx(t["work_s"] * 1000, abs=0.01) and dur["total"] >= dur["queue"] + dur["work"]


def test_full_queue_is_429_and_nothing_is_dropped(strict):
    wait_idle(strict.url)
    users = ["1", "2", "3", "4", "5", "6"]
    out: dict = {}

    def one(u):
        out[u] = post(strict.url, {"model": "llmrec", "messages": [{"role": "user", "content": f"I'm user {u}"}]},
                      headers=KEY)

    threads = [threading.Thread(target=one, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(r.status_code for r in out.values())
    assert len(codes) == 6 and set(codes) <= {200, 429}, codes
    assert 1 <= codes.count(200) and codes.count(429) >= 1  # capacity 2 (one running, one queued)
    busy = next(r for r in out.values() if r.status_code == 429)
    assert_error(busy, 429, None, "server_busy", "rate_limit_error")
    assert busy.headers["retry-after"] == "1"
    for u, r in out.items():
        if r.status_code == 200:
            assert r.json()["llmrec"]["meta"]["action"] == "recommend" and f"user {u}" in r.json()["choices"][0][
                "message"]["content"]
    assert httpx.get(f"{strict.url}/health").json()["rejected"] == codes.count(429)


def test_timeout_is_504_and_the_slot_is_held_until_the_work_ends(serve_rec, serve_cfg):
    with live(serve_rec, serve_cfg.replace(serve_timeout_s=0.001)) as s:
        err = assert_error(post(s.url, {"model": "llmrec", "messages": [{"role": "user", "content": "I'm user 7"}]}),
                           504, None, "timeout", "timeout_error")
        assert "serve_timeout_s" in err["message"]
        wait_idle(s.url)


@pytest.mark.parametrize(("key", "value"), [("serve_port", 0), ("serve_concurrency", 0), ("serve_queue", -1),
                                            ("serve_timeout_s", 0.0), ("serve_max_message_chars", 5000),
                                            ("serve_model_name", " "), ("serve_api_key", "")])
def test_serve_config_is_checked(serve_cfg, key, value):
    cfg = serve_cfg.replace_unchecked(**{key: value})  # past Config's own check
    with pytest.raises(ConfigError, match=key):
        check_config(cfg)
    with pytest.raises(ConfigError, match=key):
        ServingChat(None, cfg)
