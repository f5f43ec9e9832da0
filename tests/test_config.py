import warnings

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
    assert back == cfg.replace_unchecked(serve_api_key=None)  # every other key as written
    assert back.as_dict() == {**cfg.as_dict(), "serve_api_key": None}
    assert json.loads(Config().write(tmp_path / "unset.json").read_text())["serve_api_key"] is None


def test_the_placeholder_never_becomes_a_secret(tmp_path):
    import json

    data = json.loads(Config.load(env={"LLMREC_SERVE_API_KEY": SECRET}).write(tmp_path / "c.json").read_text())
    with pytest.raises(ConfigError, match="serve_api_key.*placeholder.*LLMREC_SERVE_API_KEY"):
        Config.load(env={}, overrides={k: v for k, v in data.items() if k != "sources"})
    with pytest.raises(ConfigError, match="serve_api_key"):
        Config.load(env={"LLMREC_SERVE_API_KEY": "<hidden>"})


# --- nested groups (issue 24): the library reads the sources, flat keys still work -------------
def test_nested_yaml_and_env(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("k: 4\nsasrec: {max_epochs: 7, seeds: [3, 4]}\nserve:\n  port: 9001\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the nested form is not deprecated
        cfg = Config.load(f, env={"LLMREC_CHROMA__PORT": "8123", "LLMREC_EVAL__SYSTEMS": "most-popular,item-knn",
                                  "LLMREC_RANK__EPOCHS": "2"})
    assert (cfg.sasrec.max_epochs, cfg.sasrec.seeds, cfg.serve.port, cfg.k) == (7, [3, 4], 9001, 4)
    assert (cfg.chroma.port, cfg.eval.systems, cfg.rank.epochs) == (8123, ["most-popular", "item-knn"], 2)
    # flat attribute reads are the same values; sources and the summary keep the flat names
    assert (cfg.sasrec_max_epochs, cfg.chroma_port, cfg.ranker_epochs) == (7, 8123, 2)
    assert cfg.sources()["sasrec_max_epochs"] == f"file {f}"
    assert cfg.sources()["chroma_port"] == "env LLMREC_CHROMA__PORT"
    assert "chroma_port=8123 (env LLMREC_CHROMA__PORT)" in cfg.summary()


def test_flat_keys_in_a_file_or_the_environment_warn_once_naming_the_new_key(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("sasrec_max_epochs: 5\nranker_epochs: 2\nk: 3\n")
    with pytest.warns(FutureWarning) as got:
        cfg = Config.load(f, env={"LLMREC_SERVE_PORT": "9002"})
    assert len(got) == 1  # one line for the whole load, not one per key
    msg = str(got[0].message)
    assert "'sasrec_max_epochs', 'ranker_epochs' are deprecated: use 'sasrec.max_epochs', 'rank.epochs'" in msg
    assert f"(file {f})" in msg and "LLMREC_SERVE_PORT -> LLMREC_SERVE__PORT" in msg and "'k'" not in msg
    assert (cfg.sasrec.max_epochs, cfg.rank.epochs, cfg.serve.port) == (5, 2, 9002)
    with pytest.warns(FutureWarning, match=r"config key 'sasrec_bf16' is deprecated: use 'sasrec.bf16'"):
        Config.load(env={"LLMREC_SASREC_BF16": "1"})


def test_the_programs_own_flat_names_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cfg = Config.load(env={}, overrides={"sasrec_seeds": [1], "serve_port": 9003})  # CLI flags
        assert cfg.replace(sasrec_max_epochs=4).sasrec.max_epochs == 4
        assert Config(k=3, sasrec_max_epochs=5).sasrec.max_epochs == 5
        assert cfg.sasrec_seeds == [1] and cfg.serve_port == 9003


def test_precedence_across_the_four_sources_in_both_forms(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("sasrec: {dim: 64, blocks: 3, heads: 4, lr: 0.01}\n")
    env = {"LLMREC_SASREC_BLOCKS": "4", "LLMREC_SASREC__HEADS": "8", "LLMREC_SASREC__LR": "0.02"}
    with pytest.warns(FutureWarning):
        cfg = Config.load(f, env=env, overrides={"sasrec.lr": 0.03})
    s = cfg.sasrec
    assert (s.dim, s.blocks, s.heads, s.lr, s.dropout) == (64, 4, 8, 0.03, Config.default("sasrec_dropout"))
    assert cfg.sources() == {"sasrec_dim": f"file {f}", "sasrec_blocks": "env LLMREC_SASREC_BLOCKS",
                             "sasrec_heads": "env LLMREC_SASREC__HEADS", "sasrec_lr": "flag"}
    # the nested variable wins over its flat form
    both = Config.load(env={"LLMREC_SASREC__HEADS": "8", "LLMREC_SASREC_HEADS": "1"})
    assert both.sasrec.heads == 8 and both.sources() == {"sasrec_heads": "env LLMREC_SASREC__HEADS"}


def test_flat_and_nested_give_equal_configs(tmp_path):
    flat, nested = tmp_path / "flat.yaml", tmp_path / "nested.yaml"
    flat.write_text("sasrec_seeds: [3, 4]\neval_systems: [ease]\nserve_port: 9004\nranker_lora_r: 4\nk: 5\n")
    nested.write_text("sasrec: {seeds: [3, 4]}\neval: {systems: [ease]}\nserve: {port: 9004}\nrank: {lora_r: 4}\nk: 5\n")
    with pytest.warns(FutureWarning):
        a = Config.load(flat, env={})
    b = Config.load(nested, env={})
    assert a == b and a.as_dict() == b.as_dict() and a.summary().replace(str(flat), str(nested)) == b.summary()
    with pytest.warns(FutureWarning):
        c = Config.load(env={"LLMREC_SASREC_SEEDS": "3,4", "LLMREC_EVAL_SYSTEMS": "ease", "LLMREC_SERVE_PORT": "9004",
                             "LLMREC_RANKER_LORA_R": "4", "LLMREC_K": "5"})
    d = Config.load(env={"LLMREC_SASREC__SEEDS": "3,4", "LLMREC_EVAL__SYSTEMS": "ease", "LLMREC_SERVE__PORT": "9004",
                         "LLMREC_RANK__LORA_R": "4", "LLMREC_K": "5"})
    assert a == c == d
    assert Config(sasrec_seeds=[3]) == Config(sasrec={"seeds": [3]}) == Config(**{"sasrec.seeds": [3]})
    assert Config().replace(sasrec_seeds=[3]) == Config().replace(sasrec={"seeds": [3]})
    assert a != Config()  # equality looks at the values


def test_errors_from_nested_keys_name_the_key(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("chroma: {port: 70000}\n")
    with pytest.raises(ConfigError, match=r"'chroma\.port' \(flat 'chroma_port'\) must be <= 65535, got 70000"):
        Config.load(f, env={})
    with pytest.raises(ConfigError, match=r"'image\.max_side' .*>= 224"):
        Config.load(env={"LLMREC_IMAGE__MAX_SIDE": "100"})
    with pytest.raises(ConfigError, match=r"unknown config key\(s\): sasrec\.epochz .*'sasrec\.max_epochs'"):
        Config.load(env={}, overrides={"sasrec": {"epochz": 3}})
    with pytest.raises(ConfigError, match="'sasrec.seeds' is given twice"):
        Config(sasrec_seeds=[1], sasrec={"seeds": [2]})
    with pytest.raises(ConfigError, match="'k'"):
        Config(k=0)  # built directly: checked too


def test_defaults_and_unchecked_copies():
    assert Config.default("media_max_bytes") == Config.default("media_max_bytes") == 200_000_000
    assert Config.default("sasrec.seeds") == [0, 1, 2] == Config().sasrec.seeds
    with pytest.raises(ConfigError, match="nope"):
        Config.default("nope")
    cfg = Config.load(env={}, overrides={"k": 3})
    bad = cfg.replace_unchecked(serve_port=0, llm_backend="tgi")  # past Config's own check
    assert (bad.serve.port, bad.llm_backend, bad.k) == (0, "tgi", 3) and cfg.serve.port == 8000
    assert bad.sources() == {"k": "flag", "serve_port": "code", "llm_backend": "code"}
    with pytest.raises(ConfigError, match="llm_backend"):
        bad.replace(k=4)  # a checked copy checks every key again


def test_written_json_stays_flat_and_loads_back(tmp_path):
    import json

    cfg = Config.load(env={"LLMREC_SASREC__SEEDS": "5"}, overrides={"eval.systems": ["ease"]})
    data = json.loads(cfg.write(tmp_path / "config.json").read_text())
    assert "sasrec" not in data and data["sasrec_seeds"] == [5] and data["eval_systems"] == ["ease"]
    assert data["sources"]["sasrec_seeds"] == "env LLMREC_SASREC__SEEDS" and set(data["sources"]) == set(cfg.as_dict())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        back = Config.load(env={}, overrides={k: v for k, v in data.items() if k != "sources"})
    assert back == cfg
