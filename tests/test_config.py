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


def test_summary_lists_non_default_keys_with_sources(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("dataset: ml-latest-small\ncandidates: 20\nk: 4\n")  # candidates: the default value
    cfg = Config.load(f, env={"LLMREC_THREADS": "1", "LLMREC_K": "6"}, overrides={"k": 5, "llm": None})
    assert cfg.summary() == (f"llmrec config (non-default): dataset=ml-latest-small (file {f}), k=5 (flag), "
                             "threads=1 (env LLMREC_THREADS)")
    assert set(cfg.non_default()) == {"dataset", "k", "threads"}
    assert cfg.sources()["candidates"] == f"file {f}" and "llm" not in cfg.sources()
    assert "{" not in cfg.summary()


def test_summary_all_defaults_and_computed_defaults():
    cfg = Config.load(env={})
    assert cfg.summary() == "llmrec config: all defaults" and cfg.non_default() == {}
    # home and ml_latest_small_dir equal to their computed default count as default
    same = Config.load(env={}, overrides={"home": str(cfg.home), "ml_latest_small_dir": cfg.ml_latest_small_dir})
    assert same.summary() == "llmrec config: all defaults"
    other = Config.load(env={}, overrides={"home": "/tmp/llmrec-x", "eval_systems": "most-popular,item-knn"})
    assert other.summary() == ("llmrec config (non-default): eval_systems=most-popular,item-knn (flag), "
                               "home=/tmp/llmrec-x (flag)")


def test_write_round_trips(tmp_path):
    import json

    f = tmp_path / "c.yaml"
    f.write_text("dataset: ml-latest-small\nsasrec_seeds: [3, 4]\nsasrec_bf16: true\n")
    cfg = Config.load(f, env={"LLMREC_RECENCY_HALF_LIFE": "2.5"},
                      overrides={"data_dir": tmp_path / "store", "k": 3})
    path = cfg.write(tmp_path / "out" / "config.json")
    data = json.loads(path.read_text())
    assert data["sources"]["dataset"] == f"file {f}" and data["sources"]["k"] == "flag"
    assert data["sources"]["recency_half_life"] == "env LLMREC_RECENCY_HALF_LIFE"
    assert data["sources"]["seed"] == "default" and set(data["sources"]) == set(cfg.as_dict())
    assert data["data_dir"] == str(tmp_path / "store")
    back = Config.load(env={}, overrides={k: v for k, v in data.items() if k != "sources"})
    assert back == cfg and back.as_dict() == cfg.as_dict()


def test_replace_keeps_sources(tmp_path):
    cfg = Config.load(env={"LLMREC_THREADS": "1"}, overrides={"k": 5})
    new = cfg.replace(data_dir=tmp_path / "d", k=5, dataset=None)
    assert new.sources() == {"threads": "env LLMREC_THREADS", "k": "flag", "data_dir": "code"}
    assert new.summary() == f"llmrec config (non-default): data_dir={tmp_path / 'd'} (code), k=5 (flag), " \
                            "threads=1 (env LLMREC_THREADS)"
    assert cfg.sources() == {"threads": "env LLMREC_THREADS", "k": "flag"}  # the original is unchanged
    assert "_sources" not in new.as_dict() and new == cfg.replace(data_dir=tmp_path / "d")
    assert Config().summary() == "llmrec config: all defaults" and Config(k=3).summary().endswith("k=3 (code)")


SECRET = "sk-unit-0123456789abcdef"


def test_secret_is_masked_in_summary_non_default_and_repr():
    cfg = Config.load(env={"LLMREC_SERVE_API_KEY": SECRET}, overrides={"k": 3})
    assert cfg.serve_api_key == SECRET  # the program still has it
    assert cfg.summary() == ("llmrec config (non-default): k=3 (flag), "
                             "serve_api_key=<hidden> (env LLMREC_SERVE_API_KEY)")
    assert cfg.non_default() == {"k": 3, "serve_api_key": "<hidden>"}
    assert SECRET not in repr(cfg) and "serve_api_key='<hidden>'" in repr(cfg)
    # a key given in a file or by the program is masked the same way; an unset one stays visible as unset
    assert SECRET not in cfg.replace(serve_api_key=SECRET + "x").summary()
    assert "serve_api_key=None" in repr(Config())


def test_write_masks_secrets_in_a_0600_file_and_round_trips_the_rest(tmp_path):
    import dataclasses
    import json
    import os
    import stat

    cfg = Config.load(env={"LLMREC_SERVE_API_KEY": SECRET}, overrides={"k": 3, "data_dir": tmp_path / "s"})
    out = tmp_path / "out" / "config.json"
    out.parent.mkdir()
    out.write_text("{}")
    out.chmod(0o644)  # an older, world-readable config.json, and a stale temporary file beside it
    (tmp_path / "out" / "config.json.part").write_text(SECRET)
    old_umask = os.umask(0)  # the mode must not depend on the umask
    try:
        cfg.write(out)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert sorted(p.name for p in out.parent.iterdir()) == ["config.json"]
    text = out.read_text()
    assert SECRET not in text
    data = json.loads(text)
    assert data["serve_api_key"] == "<hidden>" and data["sources"]["serve_api_key"] == "env LLMREC_SERVE_API_KEY"
    back = Config.load(env={}, overrides={k: v for k, v in data.items() if k not in ("sources", "serve_api_key")})
    assert back == dataclasses.replace(cfg, serve_api_key=None)  # every other key as written
    assert back.as_dict() == {**cfg.as_dict(), "serve_api_key": None}
    assert json.loads(Config().write(tmp_path / "unset.json").read_text())["serve_api_key"] is None


def test_the_placeholder_never_becomes_a_secret(tmp_path):
    import json

    data = json.loads(Config.load(env={"LLMREC_SERVE_API_KEY": SECRET}).write(tmp_path / "c.json").read_text())
    with pytest.raises(ConfigError, match="serve_api_key.*placeholder.*LLMREC_SERVE_API_KEY"):
        Config.load(env={}, overrides={k: v for k, v in data.items() if k != "sources"})
    with pytest.raises(ConfigError, match="serve_api_key"):
        Config.load(env={"LLMREC_SERVE_API_KEY": "<hidden>"})
