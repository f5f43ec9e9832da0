"""Catalogs and interactions: MovieLens loaders, the generic JSONL/CSV catalog, splits."""

from llmrec.data.catalog import LoadReport, load_catalog
from llmrec.data.movielens import load_ml100k, load_ml_latest_small
from llmrec.data.types import Dataset, Interaction, Item, histories

__all__ = [
    "Dataset", "Interaction", "Item", "LoadReport", "histories",
    "load_catalog", "load_ml100k", "load_ml_latest_small",
]
