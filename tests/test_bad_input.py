"""Bad input, the way a careless or hostile user gives it: every case gets a typed error naming
the file, line, field or item (exit code 2 at the CLI), and nothing already stored is lost or
duplicated."""

import pytest

from llmrec.data.catalog import load_catalog, load_interactions_csv, load_items_jsonl
from llmrec.errors import CatalogLineError, DataError

GOOD = b'{"id": "a", "title": "Alpha"}\n'


def _w(path, data: bytes):
    path.write_bytes(data)
    return path


# ---------------------------------------------------------------------- catalog files
def test_non_utf8_catalog_line_is_reported_as_file_line(tmp_path):
    items = _w(tmp_path / "items.jsonl", GOOD + b'{"id": "b", "title": "B\xff\xfe"}\n{"id": "c", "title": "C"}\n')
    with pytest.raises(CatalogLineError, match="items.jsonl:2: .*UTF-8") as e:
        load_items_jsonl(items)
    assert e.value.line == 2
    got = load_items_jsonl(items, skip_bad=True)
    assert [i.id for i in got] == ["a", "c"]


def test_non_utf8_interactions_row_is_reported_as_file_line(tmp_path):
    items = _w(tmp_path / "items.jsonl", GOOD)
    inter = _w(tmp_path / "i.csv", b"user,item,timestamp\nu\xff,a,1\nu2,a,2\n")
    with pytest.raises(CatalogLineError, match="i.csv:2: .*UTF-8"):
        load_catalog(items, inter)
    ds, report = load_catalog(items, inter, skip_bad=True)
    assert [x.user for x in ds.interactions] == ["u2"] and [e.line for e in report.skipped] == [2]


def test_utf8_bom_and_crlf_are_read(tmp_path):
    items = _w(tmp_path / "items.jsonl", b"\xef\xbb\xbf" + GOOD.replace(b"\n", b"\r\n") + b'{"id": "b", "title": "B"}\r\n')
    inter = _w(tmp_path / "i.csv", b"\xef\xbb\xbfuser,item,timestamp,rating\r\nu1,a,1,5\r\n")
    ds, report = load_catalog(items, inter)
    assert [i.id for i in ds.items] == ["a", "b"] and ds.items[0].title == "Alpha"
    assert len(ds.interactions) == 1 and not report.skipped


def test_catalog_path_that_is_a_directory_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match=str(tmp_path)):
        load_items_jsonl(tmp_path)
    with pytest.raises(DataError, match=str(tmp_path)):
        load_interactions_csv(tmp_path)


def test_non_finite_or_huge_metadata_is_a_line_error(tmp_path):
    # Chroma silently drops NaN/inf and turns ints beyond int64 into floats: the stored item would
    # differ from the catalog (lost fields, re-encoded on every ingest).
    items = _w(tmp_path / "items.jsonl", GOOD + b'{"id": "b", "title": "B", "score": NaN}\n'
               b'{"id": "c", "title": "C", "year": Infinity}\n'
               b'{"id": "d", "title": "D", "n": 99999999999999999999999}\n{"id": "e", "title": "E", "n": 7}\n')
    with pytest.raises(CatalogLineError, match=r"items.jsonl:2: field 'score'"):
        load_items_jsonl(items)
    report = load_catalog(items, skip_bad=True)[1]
    assert [e.line for e in report.skipped] == [2, 3, 4]
    assert "'n'" in str(report.skipped[2])


def test_duplicate_key_in_one_object_is_a_line_error(tmp_path):
    items = _w(tmp_path / "items.jsonl", GOOD + b'{"id": "b", "title": "B", "id": "c"}\n')
    with pytest.raises(CatalogLineError, match="items.jsonl:2: duplicate key 'id'"):
        load_items_jsonl(items)


def test_non_finite_timestamps_and_ratings_are_line_errors(tmp_path):
    items = _w(tmp_path / "items.jsonl", GOOD)
    inter = _w(tmp_path / "i.csv", b"user,item,timestamp,rating\nu1,a,nan,4\nu1,a,inf,4\nu1,a,1e400,4\n"
               b"u1,a,5,nan\nu1,a,-5,4\nu1,a,6,-inf\n")
    with pytest.raises(CatalogLineError, match="i.csv:2: timestamp"):
        load_catalog(items, inter)
    ds, report = load_catalog(items, inter, skip_bad=True)
    assert [e.line for e in report.skipped] == [2, 3, 4, 5, 7]
    assert "rating" in str(report.skipped[3])
    assert [x.timestamp for x in ds.interactions] == [-5.0]  # before 1970 is a valid time


def test_oversized_csv_field_is_a_line_error(tmp_path):
    items = _w(tmp_path / "items.jsonl", GOOD)
    inter = _w(tmp_path / "i.csv", b"user,item,timestamp\n" + b"u" * 200_000 + b",a,1\nu2,a,2\n")
    with pytest.raises(CatalogLineError, match="i.csv:2: "):
        load_catalog(items, inter)
