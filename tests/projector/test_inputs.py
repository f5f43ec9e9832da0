"""The projector's input with ``projector_text_input``: the poster vector followed by the text
encoder's vector of its caption, on a real store (24 ml-100k posters, captions by the image labels)."""

import numpy as np
import pytest

from llmrec.projector import checkpoint
from llmrec.projector.inputs import encoder_id, projector_inputs
from llmrec.projector.run import store_examples

pytestmark = pytest.mark.slow


def test_text_input_appends_the_caption_vector(poster_store):
    from llmrec.encoders.text import TextEncoder
    from llmrec.store import ItemStore

    cfg, _ = poster_store
    ids, V, _, _, enc = store_examples(cfg, "image")
    ids2, X, _, _, enc2 = store_examples(cfg.replace(projector_text_input=True), "image")
    assert ids == ids2 and enc2 == f"{enc}+text:{cfg.text_encoder}" and "+text:" not in enc
    te = TextEncoder(cfg)
    assert X.shape == (V.shape[0], V.shape[1] + te.dim) and np.array_equal(X[:, :V.shape[1]], V)
    _, _, metas = ItemStore(cfg.store_dir(), kind="image").matrix()
    caps = [m.get("caption", "") for m in metas]
    n = next(i for i, c in enumerate(caps) if c)
    assert np.allclose(X[n, V.shape[1]:], te.encode([caps[n]])[0], atol=1e-5)
    # No caption: zeros in the text part.
    metas[n] = {**metas[n], "caption": ""}
    Y = projector_inputs(cfg.replace(projector_text_input=True), "image", V, metas)
    assert not Y[n, V.shape[1]:].any() and np.allclose(Y[n + 1:], X[n + 1:], atol=1e-5)
    assert projector_inputs(cfg, "image", V, metas) is not None and encoder_id(cfg, "e") == "e"


def test_a_projector_is_refused_with_the_other_input(poster_store):
    from llmrec.projector.soft import SoftTokens

    cfg, _ = poster_store
    assert SoftTokens(cfg, "image").vectors.shape[1] == 1280  # trained without the text input: loads
    with pytest.raises(checkpoint.ProjectorMismatchError, match="encoder"):
        SoftTokens(cfg.replace(projector_text_input=True), "image")
