"""The real server through the `openai` client (sync, async, streaming, structured output), checked
against a ChatSession run in-process on the same recommender (the ground truth of the replay)."""

import asyncio
import json

import httpx
import openai
import pytest
from pydantic import BaseModel

from llmrec.agent.session import ChatSession

LIKES = "I loved Alien and Heat"
ALIEN, HEAT = "183", "273"


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=120)


def ext(resp) -> dict:
    return resp.model_extra["llmrec"]


def ids(items) -> list[str]:
    return [i["item_id"] for i in items]


def session_replies(rec, k, turns):
    s = ChatSession(rec, page_size=k)
    return [s.send(t) for t in turns]


def convo(turns, answers):
    """user/assistant messages alternating, ending with the last user turn."""
    msgs = []
    for i, t in enumerate(turns):
        msgs.append({"role": "user", "content": t})
        if i < len(turns) - 1:
            msgs.append({"role": "assistant", "content": answers[i]})
    return msgs


def test_models_and_health(client, server):
    assert [m.id for m in client.models.list()] == ["llmrec"]
    h = httpx.get(f"{server.url}/health").json()
    assert h["status"] == "ok" and h["capacity"] == 1 + 64 and h["rss_peak_mb"] > 100


def test_answer_lists_explained_items_as_the_session_does(client, serve_rec, serve_cfg):
    resp = client.chat.completions.create(model="llmrec", messages=[{"role": "user", "content": LIKES}])
    msg, x = resp.choices[0].message, ext(resp)
    truth = session_replies(serve_rec, serve_cfg.k, [LIKES])[0]
    assert msg.role == "assistant" and msg.content == truth.text and resp.choices[0].finish_reason == "stop"
    assert ids(x["items"]) == [r.item_id for r in truth.items] and len(x["items"]) == serve_cfg.k
    assert not set(ids(x["items"])) & {ALIEN, HEAT}
    for it in x["items"]:  # readable: "rank. title — explanation" for each machine-readable item
        assert f"{it['rank']}. {it['title']} — {it['explanation']}" in msg.content
        assert it["because"] and set(it["because"]) <= {ALIEN, HEAT}
    assert x["question"] is None and x["meta"]["action"] == "recommend"
    assert [r["item_id"] for r in x["meta"]["resolved"]] == [ALIEN, HEAT]
    t = x["timing"]
    assert 0 < t["work_s"] and 0 <= t["queue_s"] and t["queue_s"] + t["work_s"] <= t["server_s"] and t["replayed_turns"] == 1
    assert resp.usage.prompt_tokens == len(LIKES.split()) == 5
    assert resp.usage.completion_tokens == len(msg.content.split())


def test_follow_ups_replay_the_conversation_from_the_messages(client, serve_rec, serve_cfg):
    turns = [LIKES, "why the second one?", "show more"]
    truth = session_replies(serve_rec, serve_cfg.k, turns)
    r1 = client.chat.completions.create(model="llmrec", messages=convo(turns[:1], []))
    first = ext(r1)["items"]
    r2 = client.chat.completions.create(model="llmrec", messages=convo(turns[:2], [r1.choices[0].message.content]))
    assert ext(r2)["meta"]["action"] == "why" and ids(ext(r2)["items"]) == [first[1]["item_id"]]
    assert r2.choices[0].message.content == truth[1].text and first[1]["title"] in truth[1].text
    # The assistant messages are not read (any text there gives the same answer) and system messages
    # are ignored: the state comes from the user messages alone.
    msgs = [{"role": "system", "content": "You are a pirate. Recommend only pirate films."},
            *convo(turns, ["(edited by the client)", "whatever"])]
    r3 = client.chat.completions.create(model="llmrec", messages=msgs)
    assert r3.choices[0].message.content == truth[2].text and ext(r3)["meta"]["action"] == "more"
    assert not set(ids(ext(r3)["items"])) & set(ids(first))
    assert ids(ext(r3)["items"]) == [r.item_id for r in truth[2].items]


def test_a_cold_cache_gives_the_same_answer(client, server):
    turns = ["I liked Heat", "more like the first", "why the second one?"]
    msgs = convo(turns, ["-", "-"])
    for n in range(1, len(turns)):  # build the conversation turn by turn: each resumes from a snapshot
        client.chat.completions.create(model="llmrec", messages=convo(turns[:n], ["-"] * (n - 1)))
    warm = client.chat.completions.create(model="llmrec", messages=msgs)
    assert ext(warm)["timing"]["replayed_turns"] == 1  # resumed after turn 2
    server.serving.replayer.clear()
    cold = client.chat.completions.create(model="llmrec", messages=msgs)
    assert ext(cold)["timing"]["replayed_turns"] == 3
    assert cold.choices[0].message.content == warm.choices[0].message.content
    assert ext(cold)["items"] == ext(warm)["items"]
    assert ext(cold)["meta"]["action"] == "why"


def test_streaming_chunks_rebuild_the_answer(client):
    msgs = [{"role": "user", "content": LIKES}]
    whole = client.chat.completions.create(model="llmrec", messages=msgs)
    chunks = list(client.chat.completions.create(model="llmrec", messages=msgs, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.choices for c in chunks) and all(c.usage is None for c in chunks)  # no usage unless asked
    assert [c.choices[0].finish_reason for c in chunks[:-1]] == [None] * (len(chunks) - 1)
    assert chunks[-1].choices[0].finish_reason == "stop" and len(chunks) >= 2 + 3  # role, lines, finish
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == whole.choices[0].message.content
    assert ext(chunks[-1])["items"] == ext(whole)["items"]


def test_include_usage_gives_exactly_one_usage_chunk_before_done(server):
    body = {"model": "llmrec", "messages": [{"role": "user", "content": LIKES}], "stream": True,
            "stream_options": {"include_usage": True}}
    with httpx.stream("POST", f"{server.url}/v1/chat/completions", json=body, timeout=120) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [line[len("data: "):] for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    with_usage = [c for c in chunks if c.get("usage")]
    assert len(with_usage) == 1 and with_usage[0] is chunks[-1] and with_usage[0]["choices"] == []
    u = with_usage[0]["usage"]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[:-1])
    assert u["prompt_tokens"] == 5 and u["completion_tokens"] == len(text.split())
    assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]
    assert all("usage" in c and c["usage"] is None for c in chunks[:-1])


def test_async_clients_concurrently_get_their_own_answers(server, client):
    likes = ["I loved Fargo", "I loved Heat", "I loved Alien"]
    sequential = [client.chat.completions.create(model="llmrec", messages=[{"role": "user", "content": t}])
                  for t in likes]

    async def main():
        async with openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0,
                                      timeout=120) as aclient:
            return await asyncio.gather(*[aclient.chat.completions.create(
                model="llmrec", messages=[{"role": "user", "content": t}]) for t in likes])

    together = asyncio.run(main())
    assert [r.choices[0].message.content for r in together] == [r.choices[0].message.content for r in sequential]
    assert len({r.choices[0].message.content for r in together}) == 3


class Pick(BaseModel):
    item_id: str
    title: str
    explanation: str


class Picks(BaseModel):
    items: list[Pick]
    question: str | None


def test_json_schema_and_json_object_give_the_items_as_json(client):
    msgs = [{"role": "user", "content": LIKES}]
    plain = ext(client.chat.completions.create(model="llmrec", messages=msgs))["items"]
    parsed = client.chat.completions.parse(model="llmrec", messages=msgs, response_format=Picks)
    picks = parsed.choices[0].message.parsed
    assert [p.model_dump() for p in picks.items] == [
        {k: it[k] for k in ("item_id", "title", "explanation")} for it in plain]
    assert json.loads(parsed.choices[0].message.content).keys() == {"items", "question"}  # only what was asked
    obj = json.loads(client.chat.completions.create(model="llmrec", messages=msgs,
                                                    response_format={"type": "json_object"}).choices[0].message.content)
    assert obj["items"] == plain and obj["action"] == "recommend" and obj["question"] is None
    assert all(f"{it['rank']}. {it['title']}" in obj["text"] for it in plain)


def test_a_schema_asking_for_what_llmrec_lacks_is_a_400(client):
    schema = {"type": "object", "properties": {"items": {"type": "array", "items": {
        "type": "object", "properties": {"item_id": {"type": "string"}, "price": {"type": "number"}},
        "required": ["item_id", "price"]}}}, "required": ["items"]}
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="llmrec", messages=[{"role": "user", "content": LIKES}],
                                       response_format={"type": "json_schema",
                                                        "json_schema": {"name": "x", "schema": schema}})
    err = e.value.body
    assert err["param"] == "response_format.json_schema.schema" and "'price'" in err["message"]
    assert "$.items[]" in err["message"]
