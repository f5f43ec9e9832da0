"""LangChain's ChatOpenAI talking to ``llmrec serve``: a multi-turn conversation, then the same
recommendations as typed objects through ``with_structured_output``.

    .venv/bin/llmrec ingest --dataset ml-100k
    .venv/bin/llmrec serve &                 # http://127.0.0.1:8000
    .venv/bin/python examples/langchain_chat.py --base-url http://127.0.0.1:8000/v1

The server is stateless: the conversation travels in the messages, as with any OpenAI model.
(``llmrec serve`` answers chat turns; it does not call tools. For a tool-calling agent over llmrec's
``recommend`` tool, see examples/langchain_agent.py and a tool-capable model server.)
"""

import argparse

from langchain_core.messages import AIMessage, HumanMessage
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

TURNS = ["I loved Alien and Heat", "why the second one?", "show more"]


class Pick(BaseModel):
    item_id: str
    title: str
    explanation: str


class Picks(BaseModel):
    """Recommended movies."""

    items: list[Pick]


def converse(base_url: str, turns: list[str] = TURNS, api_key: str = "EMPTY", model: str = "llmrec",
             timeout: float = 300.0) -> tuple[list[tuple[str, str]], Picks]:
    """Send ``turns`` one by one (the history resent each time); returns ``([(user, assistant)], the
    first turn's recommendations as Picks)``."""
    llm = ChatOpenAI(base_url=base_url, api_key=api_key, model=model, max_retries=0, timeout=timeout)
    history, transcript = [], []
    for text in turns:
        history.append(HumanMessage(text))
        answer = llm.invoke(history)
        history.append(AIMessage(answer.content))
        transcript.append((text, answer.content))
    picks = llm.with_structured_output(Picks, method="json_schema").invoke([HumanMessage(turns[0])])
    return transcript, picks


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base-url", default="http://127.0.0.1:8000/v1", help="llmrec serve's /v1 URL")
    ap.add_argument("--api-key", default="EMPTY", help="serve_api_key, if the server has one")
    ap.add_argument("--model", default="llmrec", help="the served model name (serve_model_name)")
    args = ap.parse_args(argv)
    transcript, picks = converse(args.base_url, api_key=args.api_key, model=args.model)
    for user, assistant in transcript:
        print(f"User: {user}\nAssistant: {assistant}\n")
    print("As objects:")
    for p in picks.items:
        print(f"  {p.item_id}\t{p.title}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
