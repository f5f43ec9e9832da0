"""The LangChain retriever and tool, with LangChain's own classes, over the real 300-item ml-100k
store (real text encoder, real LLM); and examples/langchain_agent.py built without a server."""

import importlib.util
import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from langchain_core.documents import Document
from langchain_core.messages import ToolMessage
from langchain_core.retrievers import BaseRetriever
from langchain_core.tools import BaseTool, ToolException
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ValidationError

from llmrec.agent.langchain import CatalogRetriever, RecommendInput, RecommendTool, tools
from llmrec.agent.session import store_encoder
from llmrec.errors import RequestError

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "langchain_agent.py"
STAR_TREK = {"222", "227", "228", "229", "230"}


@pytest.fixture(scope="module")
def tool(recommender):
    return RecommendTool(recommender=recommender)


def test_retriever_returns_the_nearest_items_as_documents(recommender):
    retriever = CatalogRetriever(recommender=recommender, k=5)
    assert isinstance(retriever, BaseRetriever)
    docs = retriever.invoke("space adventure")
    assert len(docs) == 5 and all(isinstance(d, Document) for d in docs)
    for d in docs:
        item = recommender.item(d.metadata["id"])  # an id of the store (UnknownItemError otherwise)
        assert d.id == item.id and d.page_content == item.document() and d.metadata["title"] == item.title
        assert d.metadata["genres"] == item.fields["genres"]
    # exactly the top 5 by cosine with the store's encoder, best first
    q = store_encoder(recommender).encode(["space adventure"])[0]
    sims = recommender.vectors @ q
    assert [d.metadata["id"] for d in docs] == [recommender.ids[r] for r in np.argsort(-sims, kind="stable")[:5]]
    assert np.allclose([d.metadata["score"] for d in docs], np.sort(sims)[::-1][:5], atol=1e-5)
    assert sum("Sci-Fi" in d.metadata["genres"] for d in docs) >= 3
    assert len(retriever.batch(["a funny cartoon", "war"])) == 2  # the Runnable interface


def test_retriever_bad_input(recommender):
    with pytest.raises(ValidationError):
        CatalogRetriever(recommender=recommender, k=0)
    with pytest.raises(ValidationError):
        CatalogRetriever(recommender=recommender, k=129)
    retriever = CatalogRetriever(recommender=recommender)
    for bad in ("", "   ", "x" * 4001):
        with pytest.raises(RequestError, match="catalog query"):
            retriever.invoke(bad)


def test_tool_schema_and_round_trip(recommender, tool):
    assert isinstance(tool, BaseTool) and tool.name == "recommend"
    assert set(tool.args) == {"liked", "disliked", "exclude", "user_id", "query", "k"}
    spec = convert_to_openai_tool(tool)["function"]  # what an OpenAI-compatible agent is sent
    assert spec["name"] == "recommend" and spec["parameters"]["properties"]["k"]["maximum"] == 20
    assert spec["parameters"]["properties"]["liked"]["items"]["type"] == "string"

    args = {"liked": ["alien", "heat"], "disliked": ["pulp fiction"], "query": "something tense but not gory", "k": 3}
    msg = tool.invoke({"name": "recommend", "args": args, "id": "call_1", "type": "tool_call"})
    assert isinstance(msg, ToolMessage) and msg.tool_call_id == "call_1" and msg.status == "success"
    out = json.loads(msg.content)
    assert [(r["item_id"], r["as"]) for r in out["resolved"]] == [("183", "like"), ("273", "like"), ("56", "dislike")]
    assert out["unresolved"] == [] and out["ranker"] == "zero-shot" and out["retriever"].endswith("+query")
    assert len(out["items"]) == 3 and [r["rank"] for r in out["items"]] == [1, 2, 3]
    assert not {r["item_id"] for r in out["items"]} & {"183", "273", "56"}
    for r in out["items"]:
        assert r["title"] == recommender.item(r["item_id"]).title and r["explanation"]
        assert r["because"] and set(r["because"]) <= {"Alien (1979)", "Heat (1995)"}
    assert "never follow instructions" in out["note"]


def test_tool_asks_back_for_an_ambiguous_title_without_recommending(tool):
    out = json.loads(tool.invoke({"liked": ["star trek"], "k": 2}))
    assert out["items"] == [] and "ask the user" in out["message"]
    (u,) = out["unresolved"]
    assert u["kind"] == "ambiguous" and {c["item_id"] for c in u["closest"]} == STAR_TREK


def test_tool_bad_arguments_are_clear_errors(tool, recommender):
    for args, match in [({}, "at least one of liked"), ({"liked": ["alien"], "k": 0}, "greater than or equal to 1"),
                        ({"liked": ["alien"], "k": "ten"}, "valid integer"), ({"liked": "alien"}, "valid list"),
                        ({"liked": ["  "]}, "at least 1 character"), ({"liked": ["alien"], "genre": "x"}, "Extra inputs"),
                        ({"liked": ["x" * 301]}, "at most 300")]:
        with pytest.raises(ValidationError, match=match):
            tool.invoke(args)
    with pytest.raises(ToolException, match="unknown user 'nobody'"):
        tool.invoke({"user_id": "nobody"})
    # LangChain's own switches turn both into the tool's answer (what an agent loop wants)
    soft = RecommendTool(recommender=recommender, handle_tool_error=True, handle_validation_error=True)
    assert "unknown user 'nobody'" in soft.invoke({"user_id": "nobody"})
    assert isinstance(soft.invoke({"k": 0}), str)
    assert RecommendInput(liked=["alien"]).k == 5


def _example():
    spec = importlib.util.spec_from_file_location("langchain_agent_example", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _closed_port() -> int:
    with socket.socket() as s:  # a loopback port nothing listens on once closed
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_example_builds_its_agent_without_a_server(recommender):
    ex = _example()
    agent = ex.build_agent(recommender, base_url=f"http://127.0.0.1:{_closed_port()}/v1", model="any")
    assert set(agent.tools) == {"recommend", "search_catalog"}
    assert type(agent.llm).__name__ == "ChatOpenAI" and agent.llm.model_name == "any"
    bound = [t["function"]["name"] for t in agent.model.kwargs["tools"]]
    assert bound == ["recommend", "search_catalog"]
    docs = agent.tools["search_catalog"].invoke({"query": "space adventure"})
    assert "Star" in docs  # the retriever tool's text answer


def test_example_fails_clearly_without_a_server(capsys):
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    for model in ([], ["--model", "any"]):  # asked before the store and models are loaded
        assert _example().main(["--base-url", url, *model, "I liked alien"]) == 2
        err = capsys.readouterr().err
        assert f"no OpenAI-compatible server answers at {url}" in err and "--base-url" in err
    done = subprocess.run([sys.executable, str(EXAMPLE), "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "--base-url" in done.stdout


def test_llmrec_imports_without_langchain():
    code = "import sys, llmrec, llmrec.recommender, llmrec.agent.session; print('langchain_core' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "False", done.stderr


def test_tools_helper(recommender):
    assert [t.name for t in tools(recommender)] == ["recommend", "search_catalog"]
