"""Shared fixtures: real models (prepared by `llmrec models prepare`) and real MovieLens data."""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before any @triton.jit is defined
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from llmrec.config import Config  # noqa: E402
from llmrec.data.types import Dataset  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def base_cfg(tmp_path_factory) -> Config:
    # Models and downloads from the real home (prepared once); stores in a temporary folder.
    # No trained retriever unless a test trains one (it lives in the store, {data_dir}/retriever):
    # item-kNN over the store, the same on every machine.
    return Config.load(env={}, overrides={"data_dir": tmp_path_factory.mktemp("store"), "explain": "grounded"})


@pytest.fixture(scope="session")
def ml100k(base_cfg) -> Dataset:
    from llmrec.data.movielens import load_ml100k

    return load_ml100k(base_cfg.downloads_dir(), "recbole")


@pytest.fixture(scope="session")
def small_ml100k(ml100k) -> Dataset:
    """A real slice of ml-100k: its first 300 items and every interaction on them."""
    items = ml100k.items[:300]
    keep = {i.id for i in items}
    return Dataset("ml-100k-small", items, [x for x in ml100k.interactions if x.item in keep])


@pytest.fixture(scope="session")
def small_store(base_cfg, small_ml100k, tmp_path_factory):
    from llmrec.ingest import ingest

    cfg = base_cfg.replace(data_dir=tmp_path_factory.mktemp("small_store"))
    ingest(cfg, small_ml100k, log=lambda *_: None)
    return cfg


@pytest.fixture(scope="session")
def recommender(small_store):
    from llmrec.recommender import Recommender

    return Recommender.load(config=small_store)


@pytest.fixture(scope="session")
def poster_store(base_cfg, ml100k, tmp_path_factory):
    """(config, item ids): a store of 24 ml-100k items with their real posters (vectors, captions by the
    image labels) and an image projector trained for one epoch (k 2, hidden 64)."""
    from llmrec.ingest import ingest
    from llmrec.ingest.image import attach_posters
    from llmrec.projector.run import train_projector

    ds, _ = attach_posters(ml100k, base_cfg.posters_dir)
    items = [it for it in ds.items if it.image][:24]
    cfg = base_cfg.replace(data_dir=tmp_path_factory.mktemp("posters"), image_captioner="labels", projector_k=2,
                           projector_hidden=64, projector_epochs=1, projector_batch_size=8, projector_eval_items=2,
                           projector_holdout=0.25, threads=1)
    ingest(cfg, Dataset("ml-100k", items, []), log=lambda *_: None, images=True)
    train_projector(cfg, "image", log=lambda *_: None)
    return cfg, {it.id for it in items}
