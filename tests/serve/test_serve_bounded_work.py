"""Bounded work per request (issue 26, finding 3), against the real server: a cap on the user turns
of one request (a 400 before any ranking), and the request's deadline enforced on the replay
itself, so that a conversation too long for ``serve_timeout_s`` stops between turns and leaves the
worker free for the next request instead of ranking on for a client that already got its 504."""

import time

import httpx
from conftest import live, wait_idle

from llmrec.agent.session import ChatSession


def post(url, messages, timeout=120):
    return httpx.post(f"{url}/v1/chat/completions", json={"model": "llmrec", "messages": messages}, timeout=timeout)


def conversation(turns):
    """user/assistant messages alternating, ending with the last user turn."""
    msgs = []
    for t in turns:
        msgs += [{"role": "user", "content": t}, {"role": "assistant", "content": "(not read)"}]
    return msgs[:-1]


def error(r, status, code):
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["code"] == code, err
    return err


def test_too_many_user_turns_is_a_400_before_any_ranking(server):
    wait_idle(server.url)
    before = httpx.get(f"{server.url}/health").json()
    turns = [f"I'm user {u}" for u in range(1, 10)]  # 9 > serve_max_user_turns (8)
    t0 = time.perf_counter()
    r = post(server.url, conversation(turns), timeout=10)
    elapsed = time.perf_counter() - t0
    err = error(r, 400, "too_many_user_turns")
    assert err["param"] == "messages" and err["type"] == "invalid_request_error"
    assert "at most 8 user messages (serve_max_user_turns), got 9" in err["message"]
    assert elapsed < 2, elapsed  # no ranking ran
    after = httpx.get(f"{server.url}/health").json()
    assert (after["cache_hits"], after["cache_misses"]) == (before["cache_hits"], before["cache_misses"])
    assert after["running"] == 0 and after["queued"] == 0


def test_the_cap_counts_the_user_messages_only(serve_rec, serve_cfg):
    with live(serve_rec, serve_cfg.replace(serve_max_user_turns=2)) as s:
        two = [{"role": "system", "content": "be brief"}, *conversation(["I'm user 3", "show more"])]
        r = post(s.url, two)  # 4 messages, 2 of them the user's
        assert r.status_code == 200, r.text
        assert r.json()["llmrec"]["meta"]["action"] == "more"
        err = error(post(s.url, conversation(["I'm user 3", "show more", "show more"])), 400,
                    "too_many_user_turns")
        assert "at most 2 user messages" in err["message"]


def test_a_replay_past_the_deadline_stops_and_frees_the_worker(serve_rec, serve_cfg):
    # One turn's ranking, measured in-process on the same recommender (the server runs the same).
    session = ChatSession(serve_rec, page_size=serve_cfg.k)
    t0 = time.perf_counter()
    assert session.send("I'm user 30").meta["action"] == "recommend"
    turn_s = time.perf_counter() - t0
    # Room for about 4 of the 24 turns: the long replay is still cut off when a loaded machine makes
    # the server's turns several times slower than the one measured here, and the short request
    # (at most one turn of waiting, then its own) fits.
    timeout_s = 4 * turn_s + 0.5
    cfg = serve_cfg.replace(serve_timeout_s=timeout_s, serve_cache_size=0, serve_max_user_turns=24)
    with live(serve_rec, cfg) as s:
        t0 = time.perf_counter()
        long = post(s.url, conversation([f"I'm user {u}" for u in range(11, 35)]))  # 24 rankings
        cut_at = time.perf_counter() - t0
        error(long, 504, "timeout")
        # Right away: the 8-turn replay stops at the turn in progress, so this one waits at most for
        # it, not for the 20 or so turns left (on the old code it waited past its own deadline: 504).
        short = post(s.url, [{"role": "user", "content": "I'm user 40"}])
        assert short.status_code == 200, (short.text, turn_s, timeout_s)
        timing = short.json()["llmrec"]["timing"]
        assert timing["queue_s"] < 1.5 * turn_s + 0.3, (timing, turn_s)
        assert cut_at < timeout_s + 1.0, (cut_at, timeout_s)
        wait_idle(s.url, 30)
        h = httpx.get(f"{s.url}/health").json()
        assert h["pending_units"] == 0 and h["rejected"] == 0
