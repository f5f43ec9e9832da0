import pytest

from llmrec.config import Config
from llmrec.errors import ConfigError


def test_precedence_file_env_flags(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("candidates: 12\nk: 4\nexplain: grounded\n")
    cfg = Config.load(f, env={"LLMREC_K": "6"}, overrides={"explain": "llm"})
    assert (cfg.candidates, cfg.k, cfg.explain) == (12, 6, "llm")


def test_unknown_key_is_named(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("canditates: 12\n")
    with pytest.raises(ConfigError, match="canditates"):
        Config.load(f, env={})


def test_bad_value_is_named():
    with pytest.raises(ConfigError, match="'k'"):
        Config.load(env={"LLMREC_K": "ten"})
    with pytest.raises(ConfigError, match="candidates"):
        Config.load(env={}, overrides={"candidates": 40})


def test_threads_key():
    assert Config.load(env={"LLMREC_THREADS": "1"}).threads == 1
    with pytest.raises(ConfigError, match="threads"):
        Config.load(env={}, overrides={"threads": -2})


def test_boolean_key_from_env_file_and_flag(tmp_path):
    assert Config.load(env={"LLMREC_SASREC_BF16": "true"}).sasrec_bf16 is True
    assert Config.load(env={"LLMREC_SASREC_BF16": "0"}).sasrec_bf16 is False
    f = tmp_path / "c.yaml"
    f.write_text("sasrec_bf16: yes\n")
    assert Config.load(f, env={}).sasrec_bf16 is True
    with pytest.raises(ConfigError, match="sasrec_bf16"):
        Config.load(env={"LLMREC_SASREC_BF16": "maybe"})
    with pytest.raises(ConfigError, match="sasrec_bf16"):
        Config.load(env={}, overrides={"sasrec_bf16": 2})
