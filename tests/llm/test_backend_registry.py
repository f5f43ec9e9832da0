"""Every registered LLM backend (:data:`llmrec.llm.base.BACKENDS`) resolves; ``transformers`` is made
on the real built-in model and scores; ``vllm`` (a server needed) only up to its clear error when it
would start one without its environment; an unknown name is a ConfigError naming the registered ones."""

import inspect

import numpy as np
import pytest

from llmrec.errors import ConfigError, ModelError
from llmrec.llm.base import BACKENDS, Backend, backend_entry, load_ranker, make_backend, zero_shot_ranker


def test_every_entry_resolves():
    assert list(BACKENDS) == ["transformers", "vllm"]
    for name, entry in BACKENDS.items():
        cls = entry.load("backend")
        assert cls.name == name and callable(cls.score_labels) and callable(cls.generate)
        assert list(inspect.signature(entry.load("trained")).parameters)[:3] == ["folder", "cfg", "retriever"]
        assert list(inspect.signature(entry.load("zero_shot")).parameters) == ["cfg"]


def test_unknown_backend_is_a_config_error_naming_the_registered_ones(base_cfg):
    bad = base_cfg.replace_unchecked(llm_backend="tgi")  # past Config's own check
    for call in (lambda: make_backend(bad), lambda: zero_shot_ranker(bad), lambda: load_ranker("x", bad)):
        with pytest.raises(ConfigError, match=r"unknown llm_backend 'tgi' \(available: transformers, vllm\)"):
            call()
    with pytest.raises(ConfigError, match="available: transformers, vllm"):
        backend_entry(None)


@pytest.mark.slow
def test_transformers_backend_on_the_builtin_model(base_cfg):
    b = make_backend(base_cfg.replace(threads=1))
    assert isinstance(b, Backend) and b.name == "transformers"
    lp = b.score_labels([{"role": "user", "content": "Answer with one letter: A or B?"}], ["A", "B"])
    assert lp.dtype == np.float64 and lp.shape == (2,) and np.all(lp < 0) and np.logaddexp.reduce(lp) <= 0
    assert b.label_id("A") != b.label_id("B")
    with pytest.raises(ModelError, match="labels must be one token"):
        b.label_id("A long label")


def test_vllm_without_url_or_environment_is_a_clear_error(base_cfg, tmp_path):
    cfg = base_cfg.replace(llm_backend="vllm", vllm_python=str(tmp_path / "nope" / "python"))
    assert not cfg.vllm_url  # the backend would start its own server
    with pytest.raises(ModelError, match="make vllm"):
        make_backend(cfg)
    with pytest.raises(ModelError, match="make vllm"):
        zero_shot_ranker(cfg)
