"""The eval/sasrec keys of the one Config, and the shipped eval configs."""

from pathlib import Path

import pytest

from llmrec.config import Config
from llmrec.errors import ConfigError
from llmrec.eval import runner

REPO = Path(__file__).resolve().parents[2]


def test_list_keys_from_environment():
    cfg = Config.load(env={"LLMREC_SASREC_SEEDS": "3, 4", "LLMREC_EVAL_SYSTEMS": "most-popular,item-knn"})
    assert cfg.sasrec_seeds == [3, 4] and cfg.eval_systems == ["most-popular", "item-knn"]
    # the YAML spelling works too
    cfg = Config.load(env={"LLMREC_SASREC_SEEDS": "[3, 4]", "LLMREC_EVAL_LLM": "['zero-shot', trained]"})
    assert cfg.sasrec_seeds == [3, 4] and cfg.eval_llm == ["zero-shot", "trained"]


@pytest.mark.parametrize("name", ["ml-latest-small", "ml-100k", "ci-small"])
def test_shipped_configs_load(name):
    cfg = Config.load(REPO / "eval" / f"{name}.yaml", env={})
    assert set(cfg.eval_systems) <= set(runner.SYSTEMS) and cfg.sasrec_seeds


def test_unknown_system_is_a_config_error(tmp_path):
    cfg = Config.load(env={}, overrides={"eval_systems": ["nope"], "home": tmp_path})
    with pytest.raises(ConfigError, match="nope"):
        runner.run(cfg, tmp_path / "out")


def test_retriever_dirs_the_harness_and_the_store_keep_apart(tmp_path):
    cfg = Config.load(env={}, overrides={"home": tmp_path, "dataset": "ml-latest-small"})
    assert runner.retriever_dir(cfg) == tmp_path / "retrievers" / "ml-latest-small"
    assert runner.retriever_dir(cfg.replace(eval_max_users=50)).name == "ml-latest-small-u50"
    # the store's own retriever (llmrec train-retriever) lives in the store, unless retriever_dir says
    assert cfg.retriever_path() == tmp_path / "data" / "ml-latest-small" / "retriever"
    assert cfg.replace(retriever_dir=tmp_path / "r").retriever_path() == tmp_path / "r"
    assert runner.retriever_dir(cfg.replace(retriever_dir=tmp_path / "r")) == runner.retriever_dir(cfg)
