import json

import pytest

from llmrec.cli import _print_config, main
from llmrec.config import Config


def _args(cfg):
    return ["--home", str(cfg.home), "--data-dir", str(cfg.store_dir())]


@pytest.mark.slow  # a long end-to-end run (make test-all)
def test_recommend_json(small_store, capsys):
    assert main(["recommend", *_args(small_store), "--user", "5", "-k", "3", "--json", "--explain", "grounded"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["user"] == "5" and [r["rank"] for r in out["items"]] == [1, 2, 3]


def test_recommend_table_and_unknown_user(small_store, capsys):
    assert main(["recommend", *_args(small_store), "--user", "5", "-k", "2", "--explain", "grounded"]) == 0
    out = capsys.readouterr()
    assert "Recommendations for user 5" in out.out and "llmrec config (non-default): " in out.err
    assert main(["recommend", *_args(small_store), "--user", "no-such-user"]) == 2
    assert "unknown user 'no-such-user'" in capsys.readouterr().err


def test_ingest_bad_catalog_reports_file_line(base_cfg, tmp_path, capsys):
    items = tmp_path / "items.jsonl"
    items.write_text('{"id": "a", "title": "Alpha", "text": "a quiet film"}\n{"id": "b", "title": \n'
                     '{"id": "c", "title": "Gamma", "text": "a loud film"}\n')
    args = ["ingest", "--home", str(base_cfg.home), "--data-dir", str(tmp_path / "store"), "--catalog", str(items)]
    assert main(args) == 2
    assert f"{items}:2:" in capsys.readouterr().err
    assert not (tmp_path / "store" / "manifest.json").exists()
    assert not (tmp_path / "store" / "config.json").exists()  # written only after a successful ingest
    assert main([*args, "--skip-bad"]) == 0
    out = capsys.readouterr()
    assert "skipped 1 bad line(s)" in out.out and f"skipped {items}:2:" in out.err
    assert "holds 2 items" in out.out
    written = json.loads((tmp_path / "store" / "config.json").read_text())
    assert written["data_dir"] == str(tmp_path / "store") and written["sources"]["data_dir"] == "flag"


def test_print_config_is_one_short_line(tmp_path, capsys):
    cfg = Config.load(env={"LLMREC_THREADS": "1"}, overrides={"dataset": "ml-latest-small", "home": tmp_path})
    _print_config(cfg)
    out = capsys.readouterr()
    assert out.out == "" and out.err.count("\n") == 1 and "{" not in out.err
    assert out.err == (f"llmrec config (non-default): dataset=ml-latest-small (flag), home={tmp_path} (flag), "
                       "threads=1 (env LLMREC_THREADS)\n")
