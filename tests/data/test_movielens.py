import pytest

from llmrec.data.catalog import load_catalog, load_interactions_csv
from llmrec.data.movielens import load_ml_latest_small
from llmrec.errors import CatalogLineError, DataError
from tests.conftest import SHARED


def test_ml100k_counts(ml100k):
    assert ml100k.stats() == {"users": 943, "items": 1682, "interactions": 100_000}
    assert ml100k.items[0].title == "Toy Story (1995)"
    assert "Animation" in ml100k.items[0].text
    assert ml100k.source == "the recbole==1.2.1 wheel's copy"  # the fixture asks for recbole: said at ingest


def test_ingest_says_where_ml100k_came_from(tmp_path, base_cfg):
    from llmrec.ingest import load_dataset

    ds, _ = load_dataset(base_cfg.replace(dataset="ml-100k", ml100k_source="recbole"))
    assert ds.source.startswith("the recbole==1.2.1 wheel") and ds.name == "ml-100k"


def test_ml_latest_small_counts():
    ds = load_ml_latest_small(SHARED / "ml-latest-small")
    assert ds.stats() == {"users": 610, "items": 9742, "interactions": 100_836}


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(DataError, match="ratings.csv"):
        load_ml_latest_small(tmp_path)


def test_histories_ordered_by_time_then_item_id(ml100k):
    hist = ml100k.histories()
    assert len(hist) == 943
    ts = {(x.user, x.item): x.timestamp for x in ml100k.interactions}
    for user in ("1", "196", "943"):
        keys = [(ts[(user, i)], int(i)) for i in hist[user]]
        assert keys == sorted(keys)


def _write(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def test_malformed_catalog_line_is_reported_as_file_line(tmp_path):
    items = _write(tmp_path / "items.jsonl", [
        '{"id": "a", "title": "Alpha", "text": "first"}',
        '{"id": "b", "title": ',
        '{"id": "c", "title": "Gamma"}',
    ])
    with pytest.raises(CatalogLineError) as e:
        load_catalog(items)
    assert e.value.line == 2 and str(e.value).startswith(f"{items}:2:")


def test_skip_bad_reads_the_rest(tmp_path):
    items = _write(tmp_path / "items.jsonl", [
        '{"id": "a", "title": "Alpha"}',
        '[1, 2]',
        '{"id": "b"}',
        '{"id": "a", "title": "Alpha again"}',
        '{"id": 7, "title": "Seven", "year": 1999}',
    ])
    inter = _write(tmp_path / "inter.csv", ["user,item,timestamp,rating", "u1,a,10,4", "u1,zzz,11,3", "u2,7,x,1"])
    ds, report = load_catalog(items, inter, skip_bad=True)
    assert [i.id for i in ds.items] == ["a", "7"]
    assert ds.items[1].fields == {"year": 1999}
    assert [e.line for e in report.skipped] == [2, 3, 4, 3, 4]
    assert "duplicate item id 'a'" in str(report.skipped[2])
    assert len(ds.interactions) == 1


def test_interactions_header_checked(tmp_path):
    bad = _write(tmp_path / "i.csv", ["u,i,t", "1,2,3"])
    with pytest.raises(CatalogLineError, match=":1: header"):
        load_interactions_csv(bad)
