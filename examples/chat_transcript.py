"""Scripted multi-turn conversations with llmrec's chat session, printed as transcripts.

Each conversation is sent, message by message, to a fresh ``ChatSession`` over the store (a
"which one?" ask-back on an ambiguous title, recommendations, "why?", "not that one", "show more",
...); every user message and every reply text is printed unedited, with the reply's action and
seconds in a bracketed note line.

    .venv/bin/llmrec ingest --dataset ml-100k
    OMP_NUM_THREADS=1 .venv/bin/python examples/chat_transcript.py [--data-dir DIR] [--page 5]
        [--conversation 1|2] [MESSAGE ...]

Messages given on the command line replace the scripted conversations (one conversation).
Exit codes: 0 done, 2 an llmrec error (e.g. no store: run ``llmrec ingest`` first).
"""

from __future__ import annotations

import argparse
import sys

CONVERSATIONS = [
    ["Hi! I loved alien, heat and star trek",
     "the 1996 one",
     "why the second one?",
     "not that one",
     "show more",
     "I've seen the first",
     "more like the third but funnier"],
    ["I liked sabrina and when harry met sally...",
     "the 1954 one",
     "why the first?",
     "not that one, I don't like musicals",
     "show more",
     "something lighter, no drama",
     "why?"],
]


def run(session, messages: list[str], out=sys.stdout) -> None:
    """Send ``messages`` in order and print the transcript to ``out``."""
    for message in messages:
        reply = session.send(message)
        print(f"User: {message}", file=out)
        print(f"Assistant: {reply.text}", file=out)
        print(f"  [action {reply.meta.get('action')}, {reply.meta.get('seconds')} s]", file=out)
        print(file=out, flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", help="the store (default: the configured dataset's)")
    ap.add_argument("--config", help="a YAML config")
    ap.add_argument("--page", type=int, default=5, help="items per reply")
    ap.add_argument("--conversation", type=int, choices=range(1, len(CONVERSATIONS) + 1),
                    help="only this scripted conversation")
    ap.add_argument("messages", nargs="*")
    args = ap.parse_args()
    from llmrec.agent.session import ChatSession
    from llmrec.config import Config
    from llmrec.errors import LLMRecError
    from llmrec.recommender import Recommender

    try:
        rec = Recommender.load(args.data_dir, Config.load(args.config))
        convs = [args.messages] if args.messages else (
            [CONVERSATIONS[args.conversation - 1]] if args.conversation else CONVERSATIONS)
        for n, messages in enumerate(convs, 1):
            print(f"=== conversation {n}\n")
            run(ChatSession(rec, page_size=args.page), messages)
    except LLMRecError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
