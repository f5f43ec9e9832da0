"""The trained ranker's versioned checkpoint, and the identities it must match to be used.

Folder layout (written whole, manifest last)::

    manifest.json      format version, base model / template / retriever identities, params, results
    adapter/           the peft LoRA adapter (``adapter_config.json``, ``adapter_model.safetensors``):
                       vLLM serves it with ``--enable-lora --lora-modules ranker=adapter/``
    projector.pt       the projector's spec and weights (absent without soft tokens)
    item_vectors.npy   float32 [N, d]: the projector's inputs (standardised retriever item vectors)
    item_ids.json      the row order of ``item_vectors.npy``

A checkpoint is refused (:class:`RankerMismatchError`, naming each difference) when the base model,
the prompt template or the retriever it was trained with is not the one in use.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import struct
from pathlib import Path

from llmrec.errors import ModelError

FORMAT = 1


class RankerMismatchError(ModelError):
    """A ranker checkpoint was trained for another base model, template or retriever."""


def base_model_identity(path: str | Path) -> dict:
    """``{"config_sha256", "weights_sha256"}`` of a local model folder: its ``config.json`` and the
    header of every ``*.safetensors`` file (tensor names, dtypes, shapes and offsets: the weights
    manifest; cheap, no full read). Raises ModelError when the folder has no config or weights."""
    path = Path(path)
    cfg = path / "config.json"
    files = sorted(path.glob("*.safetensors"))
    if not cfg.is_file() or not files:
        raise ModelError(f"cannot identify base model {path}: needs config.json and *.safetensors")
    conf = json.loads(cfg.read_text())
    # Fields that change with how the folder was written but not the model itself.
    for k in ("transformers_version", "_name_or_path", "torch_dtype", "dtype"):
        conf.pop(k, None)
    w = hashlib.sha256()
    for f in files:
        with open(f, "rb") as fh:
            n = struct.unpack("<Q", fh.read(8))[0]
            w.update(f.name.encode() + b"\0" + fh.read(n))
    return {"config_sha256": hashlib.sha256(json.dumps(conf, sort_keys=True).encode()).hexdigest()[:16],
            "weights_sha256": w.hexdigest()[:16]}


def check(manifest: dict, expected: dict, folder: str | Path, error: type[ModelError] = RankerMismatchError,
          kind: str = "ranker", command: str = "train-ranker", fmt: int = FORMAT) -> None:
    """Raise ``error`` naming every key of ``expected`` (``base_model``, ``template``, ``retriever``; a
    projector's ``modality``, ``encoder``) whose value differs from the ``kind`` checkpoint's, or a format
    other than ``fmt``; the message says to rerun ``llmrec {command}``."""
    if manifest.get("format") != fmt:
        raise error(f"{kind} checkpoint {folder} has format {manifest.get('format')!r}; "
                    f"this llmrec reads format {fmt}: retrain with llmrec {command}")
    diffs = []
    for key, want in expected.items():
        have = manifest.get(key)
        if have != want:
            diffs.append(f"{key}: checkpoint {json.dumps(have, sort_keys=True)} vs in use {json.dumps(want, sort_keys=True)}")
    if diffs:
        raise error(f"{kind} checkpoint {folder} does not match: " + "; ".join(diffs) + f" (retrain with llmrec {command})")


def read_manifest(folder: str | Path, kind: str = "ranker", command: str = "train-ranker") -> dict:
    """The ``kind`` checkpoint's manifest. Raises ModelError when missing (saying to run ``llmrec
    {command}``) or unreadable."""
    p = Path(folder) / "manifest.json"
    try:
        return json.loads(p.read_text())
    except FileNotFoundError:
        raise ModelError(f"no {kind} checkpoint at {folder} (missing manifest.json): run llmrec {command}") from None
    except (OSError, ValueError) as e:
        raise ModelError(f"{kind} checkpoint {folder} has an unreadable manifest.json: {e}") from e


def base_identity(cfg) -> dict:
    """The configured LLM's identity: its config name plus :func:`base_model_identity`."""
    from llmrec.encoders.locations import llm_path

    return {"llm": cfg.llm, **base_model_identity(llm_path(cfg))}


def load_base(cfg):
    """The configured base LLM and its tokenizer (float32 on CPU, bfloat16 on CUDA) on ``cfg.device``.
    Raises ModelError when it cannot be loaded."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmrec.encoders.locations import llm_path
    from llmrec.encoders.text import resolve_device

    path = llm_path(cfg)
    device = resolve_device(cfg.device)
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    try:
        tok = AutoTokenizer.from_pretrained(path)
        llm = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device)
    except (OSError, ValueError, RuntimeError) as e:
        raise ModelError(f"cannot load LLM {path!r}: {e}") from e
    return llm, tok


def load(folder: str | Path, cfg, retriever: dict | None = None):
    """The :class:`~llmrec.rank.model.RankerModel` of a checkpoint, LoRA merged into the base weights
    (inference speed of the base model), in eval mode.

    Raises:
        ModelError: missing or damaged checkpoint files.
        RankerMismatchError: the base model, template (or, when ``retriever`` is given, the
            retriever) differs from the checkpoint's.
    """
    import numpy as np
    import torch
    from peft import PeftModel

    from llmrec.llm.projector import Projector
    from llmrec.rank.model import RankerModel, template_hash

    folder = Path(folder)
    man = read_manifest(folder)
    expected = {"base_model": base_identity(cfg), "template": template_hash()}
    if retriever is not None:
        expected["retriever"] = retriever
    check(man, expected, folder)
    llm, tok = load_base(cfg)
    try:
        llm = PeftModel.from_pretrained(llm, str(folder / "adapter")).merge_and_unload()
        projector = vectors = None
        ids = json.loads((folder / "item_ids.json").read_text())
        if man.get("soft_tokens"):
            projector = Projector.from_state(torch.load(folder / "projector.pt", weights_only=False)).to(llm.device)
            vectors = np.load(folder / "item_vectors.npy")
            if vectors.shape[0] != len(ids):
                raise ValueError(f"item_vectors.npy has {vectors.shape[0]} rows for {len(ids)} item ids")
    except (OSError, ValueError, KeyError, RuntimeError, EOFError, pickle.UnpicklingError) as e:
        raise ModelError(f"ranker checkpoint {folder} is damaged: {e}") from e
    model = RankerModel(llm, tok, projector, vectors, {i: n for n, i in enumerate(ids)})
    model.manifest = man
    return model.eval()
