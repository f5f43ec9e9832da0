"""The chat's free-text query as a vector in the store's text space: the query text (+ "Genres: ...")
encoded by the store's own text encoder, minus a share of the negated words' encoding, normalised."""

from __future__ import annotations

import weakref

import numpy as np

from llmrec.agent.reply import Profile
from llmrec.errors import ModelError

NEGATIVE_WEIGHT = 0.5
"""Share of the negated words' encoding subtracted from the query vector."""
_ENCODERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def store_encoder(recommender):
    """The text encoder of the recommender's store (``Config.text_encoder``, the model its item vectors
    were made with), loaded once per recommender; ``encode(texts) -> float32 [n, d]``.

    Raises ModelError: it cannot be loaded, or its dimension is not the store's."""
    enc = _ENCODERS.get(recommender)
    if enc is None:
        from llmrec.encoders.text import TextEncoder

        enc = TextEncoder(recommender.cfg)
        if enc.dim != recommender.vectors.shape[1]:
            raise ModelError(f"the text encoder {recommender.cfg.text_encoder!r} makes {enc.dim}-d vectors but the "
                             f"store's item vectors are {recommender.vectors.shape[1]}-d: configure the encoder "
                             "the store was ingested with")
        _ENCODERS[recommender] = enc
    return enc


def query_vector(pr: Profile, encoder) -> np.ndarray | None:
    """float32 [d]: the query text (+ "Genres: ...") encoded, minus :data:`NEGATIVE_WEIGHT` times the
    negated words' encoding, normalised; None without a query or genres (negated words alone
    do not make a query)."""
    positive = " ".join(([pr.query] if pr.query else []) + ([f"Genres: {', '.join(pr.genres)}."] if pr.genres else []))
    if not positive:
        return None
    enc = encoder
    vecs = enc.encode([positive] + ([" ".join(pr.avoid_terms)] if pr.avoid_terms else []))
    q = vecs[0] - (NEGATIVE_WEIGHT * vecs[1] if len(vecs) > 1 else 0)
    return q / max(float(np.linalg.norm(q)), 1e-12)
