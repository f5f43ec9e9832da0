"""``llmrec serve``: an OpenAI-compatible HTTP API over the chat session (vLLM's entrypoint layout).

- :mod:`~llmrec.serve.protocol`: request/response schemas (OpenAI's chat-completions format).
- :mod:`~llmrec.serve.serving`: checks, answers and shapes a request (``ServingChat``).
- :mod:`~llmrec.serve.replay`: the stateless conversation: user messages replayed through a fresh
  ``ChatSession``, with an LRU cache of session snapshots as an optimisation only.
- :mod:`~llmrec.serve.limiter`: the ranking work in worker threads, bounded, with a bounded queue.
- :mod:`~llmrec.serve.structured`: the answer as JSON for ``response_format``.
- :mod:`~llmrec.serve.app`: FastAPI routes, auth and body-size guard, OpenAI-shaped errors, ``run``.
"""

from llmrec.serve.app import create_app, run

__all__ = ["create_app", "run"]
