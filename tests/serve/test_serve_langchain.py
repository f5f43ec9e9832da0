"""The real server through LangChain's ChatOpenAI: invoke, stream, with_structured_output."""

import json

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

LIKES = "I loved Alien and Heat"


class Pick(BaseModel):
    item_id: str
    title: str
    explanation: str


class Picks(BaseModel):
    """Recommended movies."""

    items: list[Pick]


@pytest.fixture(scope="module")
def llm(server):
    return ChatOpenAI(base_url=f"{server.url}/v1", api_key="unused", model="llmrec", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def truth(server):
    import httpx

    r = httpx.post(f"{server.url}/v1/chat/completions", timeout=120,
                   json={"model": "llmrec", "messages": [{"role": "user", "content": LIKES}]})
    assert r.status_code == 200
    return r.json()


def test_invoke_and_stream_give_the_servers_answer(llm, truth):
    text = truth["choices"][0]["message"]["content"]
    msg = llm.invoke([SystemMessage("You are helpful."), HumanMessage(LIKES)])
    assert isinstance(msg, AIMessage) and msg.content == text
    assert msg.response_metadata["finish_reason"] == "stop" and msg.usage_metadata["input_tokens"] == 5
    streamed = "".join(chunk.content for chunk in llm.stream(LIKES))
    assert streamed == text


def test_multi_turn_messages_from_langchain(llm, truth):
    first = truth["llmrec"]["items"]
    answer = llm.invoke([HumanMessage(LIKES), AIMessage(truth["choices"][0]["message"]["content"]),
                         HumanMessage("why the second one?")])
    assert answer.content.startswith(f"{first[1]['title']}: ")


@pytest.mark.parametrize("method", ["json_schema", "json_mode"])
def test_with_structured_output(llm, truth, method):
    picks = llm.with_structured_output(Picks, method=method).invoke(LIKES)
    assert isinstance(picks, Picks)
    want = [{k: it[k] for k in ("item_id", "title", "explanation")} for it in truth["llmrec"]["items"]]
    assert [p.model_dump() for p in picks.items] == want


def test_structured_content_holds_only_the_schemas_properties(llm, truth):
    out = llm.with_structured_output(Picks, method="json_schema", include_raw=True).invoke(LIKES)
    assert out["parsing_error"] is None and isinstance(out["parsed"], Picks)
    assert json.loads(out["raw"].content) == {"items": [p.model_dump() for p in out["parsed"].items]}


def test_the_langchain_chat_example_runs_against_the_server(server, serve_rec):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "examples" / "langchain_chat.py"
    spec = importlib.util.spec_from_file_location("langchain_chat_example", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    transcript, picks = mod.converse(f"{server.url}/v1", timeout=120)
    assert [u for u, _ in transcript] == mod.TURNS
    first, why, more = (a for _, a in transcript)
    assert picks.items and all(serve_rec.item(p.item_id).title == p.title for p in picks.items)
    assert picks.items[0].title in first and picks.items[1].title in why  # "why the second one?"
    assert not any(p.title in more for p in picks.items)  # "show more": the next page, no repeats
