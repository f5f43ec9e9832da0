import json

from llmrec.cli import main


def _args(cfg):
    return ["--home", str(cfg.home), "--data-dir", str(cfg.store_dir())]


def test_recommend_json(small_store, capsys):
    assert main(["recommend", *_args(small_store), "--user", "5", "-k", "3", "--json", "--explain", "grounded"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["user"] == "5" and [r["rank"] for r in out["items"]] == [1, 2, 3]


def test_recommend_table_and_unknown_user(small_store, capsys):
    assert main(["recommend", *_args(small_store), "--user", "5", "-k", "2", "--explain", "grounded"]) == 0
    out = capsys.readouterr()
    assert "Recommendations for user 5" in out.out and "llmrec config:" in out.err
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
    assert main([*args, "--skip-bad"]) == 0
    out = capsys.readouterr()
    assert "skipped 1 bad line(s)" in out.out and f"skipped {items}:2:" in out.err
    assert "holds 2 items" in out.out
